"""Reading acceptance (SPEC §1): structure, device key at the reading's time, signature,
sequencing, then a durable insert with a fresh salt.

A reading is only ever reported ``accepted`` after the transaction that stores it commits.

One request is one transaction whatever its size, and its SQL is a fixed handful of
statements rather than a few per reading: the devices with their keys, locked in id order (so
two concurrent requests never deadlock), a lookup of the ids already stored (only for readings
not ahead of their device's last seq), then one ``COPY`` (or multi-row insert) of the
readings, one insert of the gaps and one update of the devices. Every decision in between is
made in Python over the state those statements returned, in the order the readings were sent,
exactly as if they had arrived one by one. Signatures are checked on a small thread pool (the
curve libraries release the GIL), or inline in the worker processes of
:mod:`ledger.ingest_pool`, which take whole request bodies (:func:`ingest_batch`).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Literal, NamedTuple

import orjson
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from attestation.errors import AttestationError
from attestation.readings import SignedReading, parse_reading
from ledger.errors import Conflict, Invalid, LedgerError, MalformedBody, NotFound, RateLimited
from ledger.metrics import count_readings
from ledger.ratelimit import DeviceRateLimiter
from ledger.store.db import UNIQUE_VIOLATIONS, Database, bulk_insert, bulk_update, one_of, storable_text
from ledger.store.models import Device, DeviceGap, DeviceKeyRecord, Reading, naive_utc

__all__ = ["IngestResult", "decode_body", "ingest", "ingest_batch", "ingest_many", "results_json", "verify_in_threads"]

Status = Literal["accepted", "duplicate", "rejected"]
Rejection = AttestationError | LedgerError

#: A concurrent request storing the same reading or seq makes the insert fail; the decisions are
#: then made again over the new state (which names the reading ``duplicate`` or ``replayed``).
_ATTEMPTS = 3
_VERIFY_CHUNK = 64
_verifiers = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2), thread_name_prefix="verify")
_threaded_verify = True


def verify_in_threads(enabled: bool) -> None:
    """Check a request's signatures on the thread pool (the default: one process serving) or
    inline (a worker of :mod:`ledger.ingest_pool`, one of several processes already)."""
    global _threaded_verify
    _threaded_verify = enabled


class IngestResult(NamedTuple):  # a tuple: a 1,000-reading batch builds 1,000 of them
    id: str | None
    status: Status
    code: str | None = None
    message: str | None = None


_READING_COLUMNS = ("id", "device_id", "key_id", "seq", "ts", "kind", "lot", "envelope", "salt", "prev_mismatch", "received_at")
#: What sequencing reads of a device's keys (not its certificate chain or registration transaction).
_KEY_COLUMNS = [DeviceKeyRecord.__table__.c.id.label("key_id"),
                *(DeviceKeyRecord.__table__.c[name] for name in ("alg", "public_key", "valid_from", "valid_until"))]  # fmt: skip


class _Key(NamedTuple):
    """A device_keys row as sequencing reads it."""

    id: int
    alg: str
    public_key: str
    valid_from: datetime  # naive UTC
    valid_until: datetime | None


@dataclass
class _DeviceState:
    """A device's sequencing state as of the readings decided so far in this request."""

    id: str
    last_seq: int | None
    last_digest: str | None
    last_ts: datetime | None  # naive UTC
    keys: list[_Key] = field(default_factory=list)  # oldest first
    changed: bool = False

    def key_at(self, naive: datetime) -> _Key | None:
        for key in reversed(self.keys):
            if key.valid_from <= naive and (key.valid_until is None or naive < key.valid_until):
                return key
        return None


@dataclass
class _Candidate:
    """A parsed reading on its way through the checks; ``key`` is set once the key is found."""

    position: int
    reading: SignedReading
    ts: datetime  # naive UTC, as stored
    key: _Key | None = None  # the key valid at ts, once found


def ingest(db: Database, envelope: Any, *, max_future_skew_s: float, now: datetime | None = None,
           limiter: DeviceRateLimiter | None = None) -> IngestResult:
    """Accept one reading (an envelope, or one already parsed); raise the :class:`LedgerError`
    or :class:`AttestationError` that rejects it."""
    [(reading_id, outcome)] = _ingest(db, [envelope], max_future_skew_s=max_future_skew_s, now=now, limiter=limiter)
    if isinstance(outcome, (AttestationError, LedgerError)):
        raise outcome
    return IngestResult(reading_id, outcome)


def ingest_many(db: Database, envelopes: Sequence[Any], *, max_future_skew_s: float, now: datetime | None = None,
                limiter: DeviceRateLimiter | None = None) -> list[IngestResult]:
    """Accept each reading on its own merits (one bad reading does not sink the others), in one
    transaction; one result per envelope, in order."""
    return [
        IngestResult(reading_id, "rejected", outcome.code, outcome.message)
        if isinstance(outcome, (AttestationError, LedgerError))
        else IngestResult(reading_id, outcome)
        for reading_id, outcome in _ingest(db, envelopes, max_future_skew_s=max_future_skew_s, now=now, limiter=limiter)
    ]


def decode_body(body: bytes) -> Any:
    """A request body as JSON; raise :class:`MalformedBody` (400 ``invalid_json``) if it is not."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        try:  # orjson refuses integers beyond 64 bits, which are valid JSON (and refused later by name)
            return json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise MalformedBody(f"the request body is not valid UTF-8 JSON: {exc}") from None


def ingest_batch(db: Database, body: bytes, *, max_batch: int, max_future_skew_s: float,
                 limiter: DeviceRateLimiter | None = None) -> bytes:
    """:func:`ingest_many` over a request body holding a JSON array of at most ``max_batch``
    readings; the results as the JSON array ``POST /v1/readings`` answers (:func:`results_json`)."""
    envelopes = decode_body(body)
    if not isinstance(envelopes, list):
        raise Invalid("the body must be a JSON array of readings", code="invalid_reading")
    if len(envelopes) > max_batch:
        raise Invalid(f"send at most {max_batch} readings per request, not {len(envelopes)}", code="too_many_readings")
    return results_json(ingest_many(db, envelopes, max_future_skew_s=max_future_skew_s, limiter=limiter))


def results_json(results: Sequence[IngestResult]) -> bytes:
    """``[{"id", "status", "code", "message"}, …]``, one object per reading in order (SPEC §1)."""
    return orjson.dumps([{"id": i, "status": s, "code": c, "message": m} for i, s, c, m in results])


#: What became of one envelope: the reading's id (None if it did not parse) and its status or rejection.
Outcome = tuple[str | None, Literal["accepted", "duplicate"] | Rejection]


def _ingest(db: Database, envelopes: Sequence[Any], *, max_future_skew_s: float, now: datetime | None,
            limiter: DeviceRateLimiter | None) -> list[Outcome]:
    now = now or datetime.now(timezone.utc)
    outcomes: list[Outcome | None] = [None] * len(envelopes)
    candidates: list[_Candidate] = []
    for position, envelope in enumerate(envelopes):
        reading_id = None
        try:
            reading = envelope if isinstance(envelope, SignedReading) else parse_reading(envelope)
            reading_id = reading.id
            if reading.lot is not None and not storable_text(reading.lot):
                raise Invalid("payload.lot must not contain NUL (U+0000): the ledger cannot store it", code="invalid_reading")
            _check_rate(limiter, reading)
            candidates.append(_Candidate(position, reading, reading.ts.replace(tzinfo=None)))  # ts is UTC
        except (AttestationError, LedgerError) as exc:
            outcomes[position] = (reading_id, exc)
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            with db.session() as session:
                decided = _decide_and_store(session, candidates, now=now, max_future_skew_s=max_future_skew_s)
            break
        except UNIQUE_VIOLATIONS:
            if attempt == _ATTEMPTS:
                raise
    for c in candidates:
        outcomes[c.position] = (c.reading.id, decided[c.position])
    count_readings(("rejected", outcome.code) if isinstance(outcome, (AttestationError, LedgerError)) else (outcome, "")
                   for _, outcome in outcomes)  # type: ignore[misc]  # every position is filled
    return outcomes  # type: ignore[return-value]


def _decide_and_store(session: Session, candidates: list[_Candidate], *, now: datetime,
                      max_future_skew_s: float) -> dict[int, Literal["accepted", "duplicate"] | Rejection]:
    """Decide every candidate against the stored state, store the accepted ones; flushes, does not commit."""
    decided: dict[int, Literal["accepted", "duplicate"] | Rejection] = {}  # by position
    if not candidates:
        return decided
    # lock first: a concurrent request for the same devices commits before we look for stored ids
    devices = _lock_devices(session, {c.reading.device for c in candidates})
    stored = _stored_ids(session, candidates, devices)

    # 1. what each reading needs alone: not stored yet, a known device, a sane time, the key valid then
    latest = naive_utc(now + timedelta(seconds=max_future_skew_s))
    to_verify: list[_Candidate] = []
    for c in candidates:
        reading = c.reading
        if reading.id in stored:
            decided[c.position] = "duplicate"
            continue
        try:
            device = devices.get(reading.device)
            if device is None:
                raise NotFound(f"device {reading.device} is not registered: POST /v1/devices first", code="unknown_device")
            if c.ts > latest:
                raise Invalid(f"payload.ts {reading.payload['ts']} is in the future: check the device clock", code="timestamp_in_future")
            key = device.key_at(c.ts)
            if key is None:
                raise Invalid(
                    f"no key of device {device.id} was valid at {reading.payload['ts']} (registered, rotated or revoked at another time)",
                    code="key_not_valid",
                )
            if key.alg != reading.alg:
                raise Invalid(f"device {device.id} signs with {key.alg}, the reading says {reading.alg}", code="algorithm_mismatch")
        except LedgerError as exc:
            decided[c.position] = exc
            continue
        c.key = key
        to_verify.append(c)

    # 2. signatures, in parallel
    failures = _verify_all(to_verify)

    # 3. sequencing, in the order the readings were sent
    accepted: dict[str, _Candidate] = {}  # reading id -> candidate, this request
    seqs: set[tuple[str, int]] = set()
    rows: list[tuple[Any, ...]] = []
    gaps: list[dict[str, Any]] = []
    received_at = naive_utc(now)
    salts = os.urandom(32 * len(to_verify))  # one system call for the request's salts
    for c in to_verify:
        reading, device = c.reading, devices[c.reading.device]
        if c.position in failures:
            decided[c.position] = failures[c.position]
            continue
        if reading.id in accepted:  # the same reading twice in one request
            decided[c.position] = "duplicate"
            continue
        try:
            _check_sequence(session, device, reading, c.ts, seqs)
        except LedgerError as exc:
            decided[c.position] = exc
            continue
        gap = _chain_gap(session, device, reading, accepted)
        rows.append((  # in _READING_COLUMNS order
            reading.id, device.id, c.key.id, reading.seq, c.ts, reading.kind, reading.lot, orjson.dumps(reading.raw).decode(),
            salts[32 * len(rows) : 32 * len(rows) + 32], gap is not None and gap["kind"] != "restart", received_at,
        ))  # fmt: skip
        if gap is not None:
            gaps.append(gap)
        accepted[reading.id] = c
        seqs.add((device.id, reading.seq))
        device.last_seq, device.last_digest, device.last_ts, device.changed = reading.seq, reading.id, c.ts, True
        decided[c.position] = "accepted"

    # 4. store
    bulk_insert(session, Reading.__table__, rows, columns=_READING_COLUMNS)
    if gaps:
        session.execute(insert(DeviceGap), gaps)
    bulk_update(
        session,
        Device.__table__,
        "id",
        [{"id": d.id, "last_seq": d.last_seq, "last_digest": d.last_digest, "last_ts": d.last_ts} for d in devices.values() if d.changed],
    )
    session.flush()
    return decided


def _lock_devices(session: Session, device_ids: set[str]) -> dict[str, _DeviceState]:
    """The devices named in a request with their keys, rows locked in id order until commit."""
    table, keys = Device.__table__, DeviceKeyRecord.__table__
    rows = session.execute(  # one round trip: each device row with its keys, oldest first
        select(table.c.id, table.c.last_seq, table.c.last_digest, table.c.last_ts, *_KEY_COLUMNS)
        .select_from(table.outerjoin(keys, keys.c.device_id == table.c.id))
        .where(one_of(session, table.c.id, device_ids))
        .order_by(table.c.id, keys.c.id)
        .with_for_update(of=table)
    )
    devices: dict[str, _DeviceState] = {}
    for row in rows:
        device = devices.get(row.id)
        if device is None:
            device = devices[row.id] = _DeviceState(row.id, row.last_seq, row.last_digest, row.last_ts)
        if row.key_id is not None:
            device.keys.append(_Key(row.key_id, row.alg, row.public_key, row.valid_from, row.valid_until))
    return devices


def _stored_ids(session: Session, candidates: list[_Candidate], devices: dict[str, _DeviceState]) -> set[str]:
    """The candidates already stored. Only a reading at or below its device's last seq can be
    (a stored reading's seq never exceeds it, and a reading's id commits to its device), so
    the usual request, every reading moving its device forward, needs no lookup at all."""
    behind = set()
    for c in candidates:
        device = devices.get(c.reading.device)
        if device is not None and device.last_seq is not None and c.reading.seq <= device.last_seq:
            behind.add(c.reading.id)
    return set(session.scalars(select(Reading.id).where(Reading.id.in_(behind)))) if behind else set()


def _verify_all(candidates: list[_Candidate]) -> dict[int, AttestationError]:
    """Check every candidate's signature with its key; the failures by position."""

    def verify(chunk: Iterable[_Candidate]) -> list[tuple[int, AttestationError]]:
        failures = []
        for c in chunk:
            try:
                c.reading.verify(c.key.public_key)
            except AttestationError as exc:
                failures.append((c.position, exc))
        return failures

    chunks = [candidates[i : i + _VERIFY_CHUNK] for i in range(0, len(candidates), _VERIFY_CHUNK)]
    if len(chunks) <= 1 or not _threaded_verify:
        return dict(verify(candidates))
    return {position: exc for failures in _verifiers.map(verify, chunks) for position, exc in failures}


def _check_sequence(session: Session, device: _DeviceState, reading: SignedReading, ts: datetime,  # naive UTC
                    seqs: set[tuple[str, int]]) -> None:
    """Raise :class:`Conflict` unless ``reading`` moves its device's sequence forward (SPEC §1)."""
    if device.last_seq is None:
        return
    if reading.seq == device.last_seq or (device.id, reading.seq) in seqs or reading.seq < device.last_seq and session.scalar(
        select(Reading.pk).where(Reading.device_id == device.id, Reading.seq == reading.seq)
    ):
        raise Conflict(f"seq {reading.seq} of device {device.id} was already used by another reading", code="replayed")
    if reading.seq < device.last_seq:
        raise Conflict(
            f"seq {reading.seq} is not above the device's last seq {device.last_seq}: sequence numbers must strictly increase",
            code="sequence_regressed",
        )
    if device.last_ts is not None and ts < device.last_ts:
        raise Conflict(f"payload.ts is before the device's previous reading ({device.last_ts.isoformat()}Z)", code="timestamp_regressed")


def _chain_gap(session: Session, device: _DeviceState, reading: SignedReading,
               accepted: dict[str, _Candidate]) -> dict[str, Any] | None:
    """How ``reading`` breaks the device's hash chain, if it does (SPEC §1 ``prev``), as a
    ``device_gaps`` row.

    The reading is authentic (its signature verified), so it is stored either way; the gap is
    recorded for auditors and supervision (fraud cases 10 and 11).
    """
    if reading.prev == device.last_digest or device.last_digest is None and reading.prev is None:
        return None
    if reading.prev is None:
        kind = "restart"  # first reading after a reboot: allowed, but readings may hide behind it
    elif (reading.prev in accepted and accepted[reading.prev].reading.device == device.id) or session.scalar(
        select(Reading.pk).where(Reading.id == reading.prev, Reading.device_id == device.id)
    ):
        kind = "fork"  # prev already has a successor: the key signs in two places
    else:
        kind = "prev_mismatch"  # readings between the last stored one and this were withheld or lost
    return {
        "device_id": device.id,
        "reading_id": reading.id,
        "kind": kind,
        "seq": reading.seq,
        "previous_seq": device.last_seq,
        "expected_prev": device.last_digest,
        "claimed_prev": reading.prev,
    }


def _check_rate(limiter: DeviceRateLimiter | None, reading: SignedReading) -> None:
    if limiter is not None and (wait := limiter.take(reading.device)):
        raise RateLimited(
            f"device {reading.device} sends faster than {limiter.rate:g} readings/s (burst {limiter.burst}); retry later",
            retry_after=math.ceil(wait),
        )
