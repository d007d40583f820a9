"""Reading acceptance (SPEC §1): structure, device key at the reading's time, signature,
sequencing, then a durable insert with a fresh salt.

A reading is only ever reported ``accepted`` after the transaction that stores it commits.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from attestation.errors import AttestationError
from attestation.readings import SignedReading, parse_reading
from ledger.errors import Conflict, Invalid, LedgerError, NotFound, RateLimited
from ledger.ratelimit import DeviceRateLimiter
from ledger.store.db import Database
from ledger.store.models import Device, DeviceGap, DeviceKeyRecord, Reading, naive_utc, utc

__all__ = ["IngestResult", "ingest", "ingest_many"]

Status = Literal["accepted", "duplicate", "rejected"]


@dataclass(frozen=True)
class IngestResult:
    id: str | None
    status: Status
    code: str | None = None
    message: str | None = None


def _key_at(device: Device, moment: datetime) -> DeviceKeyRecord | None:
    naive = naive_utc(moment)
    for key in reversed(device.keys):
        if key.valid_from <= naive and (key.valid_until is None or naive < key.valid_until):
            return key
    return None


def _accept(session: Session, reading: SignedReading, *, now: datetime, max_future_skew_s: float) -> Status:
    """Check and store one parsed reading inside the caller's transaction."""
    if session.scalar(select(Reading.pk).where(Reading.id == reading.id)) is not None:
        return "duplicate"
    device = session.get(Device, reading.device, with_for_update=True)
    if device is None:
        raise NotFound(f"device {reading.device} is not registered: POST /v1/devices first", code="unknown_device")
    ts = reading.ts
    if ts > now + timedelta(seconds=max_future_skew_s):
        raise Invalid(f"payload.ts {reading.payload['ts']} is in the future: check the device clock", code="timestamp_in_future")
    key = _key_at(device, ts)
    if key is None:
        raise Invalid(
            f"no key of device {device.id} was valid at {reading.payload['ts']} (registered, rotated or revoked at another time)",
            code="key_not_valid",
        )
    if key.alg != reading.alg:
        raise Invalid(f"device {device.id} signs with {key.alg}, the reading says {reading.alg}", code="algorithm_mismatch")
    reading.verify(key.public_key)

    if device.last_seq is not None:
        if reading.seq == device.last_seq or session.scalar(
            select(Reading.pk).where(Reading.device_id == device.id, Reading.seq == reading.seq)
        ):
            raise Conflict(f"seq {reading.seq} of device {device.id} was already used by another reading", code="replayed")
        if reading.seq < device.last_seq:
            raise Conflict(
                f"seq {reading.seq} is not above the device's last seq {device.last_seq}: sequence numbers must strictly increase",
                code="sequence_regressed",
            )
        if device.last_ts is not None and ts < utc(device.last_ts):
            raise Conflict(f"payload.ts is before the device's previous reading ({device.last_ts.isoformat()}Z)", code="timestamp_regressed")
    gap = _chain_gap(session, device, reading)

    session.add(
        Reading(
            id=reading.id,
            device_id=device.id,
            key_id=key.id,
            seq=reading.seq,
            ts=naive_utc(ts),
            kind=reading.kind,
            lot=reading.lot,
            envelope=json.dumps(reading.raw, separators=(",", ":"), ensure_ascii=False),
            salt=os.urandom(32),
            prev_mismatch=gap is not None and gap.kind != "restart",
            received_at=naive_utc(now),
        )
    )
    if gap is not None:
        session.add(gap)
    device.last_seq, device.last_digest, device.last_ts = reading.seq, reading.id, naive_utc(ts)
    session.flush()
    return "accepted"


def _chain_gap(session: Session, device: Device, reading: SignedReading) -> DeviceGap | None:
    """How ``reading`` breaks the device's hash chain, if it does (SPEC §1 ``prev``).

    The reading is authentic (its signature verified), so it is stored either way; the gap is
    recorded for auditors and supervision (fraud cases 10 and 11).
    """
    if reading.prev == device.last_digest or device.last_digest is None and reading.prev is None:
        return None
    if reading.prev is None:
        kind = "restart"  # first reading after a reboot: allowed, but readings may hide behind it
    elif session.scalar(select(Reading.pk).where(Reading.id == reading.prev, Reading.device_id == device.id)):
        kind = "fork"  # prev already has a successor: the key signs in two places
    else:
        kind = "prev_mismatch"  # readings between the last stored one and this were withheld or lost
    return DeviceGap(
        device_id=device.id,
        reading_id=reading.id,
        kind=kind,
        seq=reading.seq,
        previous_seq=device.last_seq,
        expected_prev=device.last_digest,
        claimed_prev=reading.prev,
    )


def _check_rate(limiter: DeviceRateLimiter | None, reading: SignedReading) -> None:
    if limiter is not None and (wait := limiter.take(reading.device)):
        raise RateLimited(
            f"device {reading.device} sends faster than {limiter.rate:g} readings/s (burst {limiter.burst}); retry later",
            retry_after=math.ceil(wait),
        )


def ingest(db: Database, envelope: Any, *, max_future_skew_s: float, now: datetime | None = None,
           limiter: DeviceRateLimiter | None = None) -> IngestResult:
    """Accept one reading (an envelope, or one already parsed); raises :class:`LedgerError` /
    :class:`AttestationError` on rejection."""
    reading = envelope if isinstance(envelope, SignedReading) else parse_reading(envelope)
    _check_rate(limiter, reading)
    for attempt in (1, 2):
        try:
            with db.session() as session:
                status = _accept(session, reading, now=now or datetime.now(timezone.utc), max_future_skew_s=max_future_skew_s)
            return IngestResult(reading.id, status)
        except IntegrityError:
            if attempt == 2:  # a concurrent insert of the same reading or seq: the second pass names it
                raise
    raise AssertionError("unreachable")


def ingest_many(db: Database, envelopes: list[Any], *, max_future_skew_s: float, now: datetime | None = None,
                limiter: DeviceRateLimiter | None = None) -> list[IngestResult]:
    """Accept each reading on its own (one bad reading does not sink the others), one commit."""
    now = now or datetime.now(timezone.utc)
    results: list[IngestResult] = []
    with db.session() as session:
        for envelope in envelopes:
            reading_id = None
            try:
                reading = parse_reading(envelope)
                reading_id = reading.id
                _check_rate(limiter, reading)
                with session.begin_nested():
                    status = _accept(session, reading, now=now, max_future_skew_s=max_future_skew_s)
                results.append(IngestResult(reading_id, status))
            except (AttestationError, LedgerError) as exc:
                results.append(IngestResult(reading_id, "rejected", exc.code, exc.message))
    return results
