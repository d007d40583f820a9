"""Production-supervision answers: a device's metric over periods, with the readings that prove it.

:func:`production_answer` selects the device's readings for the query's window, computes the
metric with :func:`attestation.production.compute` from the *anchored* ones only, and returns them
as evidence: one ``pledgeledger.multiproof/1`` bundle of the device per batch
(:func:`ledger.proofs.readings_multiproof`). A bank re-verifies the whole answer against the chain
with ``pledgeledger verify`` (:func:`attestation.production.verify_production`).

Which readings: the device's readings of every kind, in sequence order, from its last metric
reading (``power_meter`` or ``equipment_state``) at or before the window's start to its first one
at or after the window's end (from the window's start, or to its latest reading, where there is
none). They are consecutive, so their ``prev`` links prove nothing between them was left out.
A reading whose batch is not anchored yet (``ANCHORED_STATES``) is not used: it is listed under
``pending`` (unproven, so outside ``result``), and the hole it leaves shows in ``result`` as a
``chain_break`` or ``no_reading_after``, so the metric says it is incomplete.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from attestation.production import PRODUCTION_FORMAT, ProductionQuery, compute_payloads, metric_kinds
from attestation.readings import parse_reading
from ledger.devices import get_device
from ledger.errors import Invalid
from ledger.proofs import readings_multiproof
from ledger.store.models import ANCHORED_STATES, Batch, DeviceKeyRecord, Organisation, Reading, naive_utc, utc

__all__ = ["MAX_READINGS", "production_answer"]

#: The most readings one answer carries (each with its signature, salt and key): a longer range is
#: refused with ``too_many_readings``.
MAX_READINGS = 100_000


def _bounds(session: Session, device: str, kind: str, query: ProductionQuery) -> tuple[int | None, int | None]:
    """Sequence numbers of the metric readings bracketing the window (``None`` where there is none)."""
    start, end = (naive_utc(t) for t in query.window)
    of_kind = (Reading.device_id == device, Reading.kind == kind)
    lo = session.scalar(select(Reading.seq).where(*of_kind, Reading.ts <= start).order_by(Reading.seq.desc()).limit(1))
    hi = session.scalar(select(Reading.seq).where(*of_kind, Reading.ts >= end).order_by(Reading.seq).limit(1))
    return lo, hi


def _payload(reading: Reading) -> tuple[str, dict[str, Any]]:
    """A stored reading's digest and payload (checked at ingest: a JSON envelope is not parsed again)."""
    envelope = json.loads(reading.envelope)
    return reading.id, envelope["payload"] if "payload" in envelope else parse_reading(envelope).payload


def _pending(reading: Reading, batch: Batch | None) -> dict[str, Any]:
    return {
        "id": reading.id,
        "seq": reading.seq,
        "ts": utc(reading.ts).isoformat().replace("+00:00", "Z"),
        "batch": reading.batch_index,
        "status": batch.status if batch is not None else "unbatched",
    }


def production_answer(session: Session, org: Organisation, query: ProductionQuery) -> dict[str, Any]:
    """The ``pledgeledger.production/1`` answer to ``query`` as ``org`` may see it (the device's own
    operator, banks and auditors; ``device_not_found`` otherwise)."""
    device = get_device(session, query.device, org)
    lo, hi = _bounds(session, device.id, metric_kinds(query.metric), query)
    start, end = (naive_utc(t) for t in query.window)
    where = [Reading.device_id == device.id]
    where.append(Reading.seq >= lo if lo is not None else Reading.ts >= start)
    where.append(Reading.seq <= hi if hi is not None else Reading.ts < end)
    selected = select(Reading, Batch).outerjoin(Batch, Reading.batch_index == Batch.index).where(*where)
    rows = session.execute(selected.order_by(Reading.seq).limit(MAX_READINGS + 1)).all()
    if len(rows) > MAX_READINGS:
        raise Invalid(f"more than {MAX_READINGS} readings in this range: ask for fewer periods", code="too_many_readings")
    anchored = [(r, b) for r, b in rows if b is not None and b.status in ANCHORED_STATES]
    result = compute_payloads(query, [_payload(r) for r, _ in anchored])
    keys = {k.id: k for k in session.scalars(select(DeviceKeyRecord).where(DeviceKeyRecord.device_id == device.id))}
    by_batch: dict[int, list[Reading]] = defaultdict(list)
    batches: dict[int, Batch] = {}
    for reading, batch in anchored:
        by_batch[batch.index].append(reading)
        batches[batch.index] = batch
    return {
        "format": PRODUCTION_FORMAT,
        "query": query.as_dict(),
        "result": result,
        "pending": [_pending(r, b) for r, b in rows if b is None or b.status not in ANCHORED_STATES],
        "evidence": [
            readings_multiproof(session, batches[index], by_batch[index], about={"device": device.id}, keys=keys)
            for index in sorted(by_batch)
        ],
    }
