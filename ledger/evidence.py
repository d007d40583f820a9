"""A lot's evidence package (``pledgeledger.evidence/1``, :mod:`attestation.evidence`), built as a zip.

:func:`build_evidence` writes the package into a file object (the service uses a spooled temporary
file, so a large lot goes to disk, not memory): chain records are read through
:class:`~ledger.chain.evidence.EvidenceReader`, the same reader a verifier uses, fixed at the block the
package is made at; readings are written one anchored batch at a time, each as a multiproof bundle
(:func:`ledger.proofs.multiproof_bundle`), so memory holds one batch at most. File names are
deterministic (:func:`attestation.evidence.batch_path` and friends) and every entry carries the
package's creation time.
"""

from __future__ import annotations

import json
import zipfile
from datetime import datetime, timezone
from typing import IO, Any, Callable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from attestation.collateral import decode_lot_event, replay
from attestation.evidence import (
    EVENTS_FILE,
    EVIDENCE_FORMAT,
    LOT_FILE,
    MANIFEST,
    TIMELINE_FILE,
    action_path,
    batch_path,
    device_path,
    file_entry,
    transaction_path,
)
from ledger import lots, proofs
from ledger.audit import chain_form
from ledger.chain.base import ANCHOR, COLLATERAL, REGISTRY, ChainError
from ledger.chain.client import ChainClient
from ledger.chain.evidence import EvidenceReader
from ledger.store.models import ANCHORED_STATES, Action, Batch, Device, Lot, Reading, utc

__all__ = ["build_evidence", "evidence_filename"]

GENERATOR = "pledgeledger 0.1.0"


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else utc(moment).isoformat().replace("+00:00", "Z")


def evidence_filename(lot: Lot, block: int) -> str:
    """The name a downloaded package is saved under."""
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in lot.id)
    return f"evidence-{safe}-block-{block}.zip"


class _Writer:
    """Zip entries with a fixed time and their manifest entries."""

    def __init__(self, out: IO[bytes], created: datetime) -> None:
        self.zip = zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED)
        self.time = created.timetuple()[:6]
        self.entries: list[dict[str, Any]] = []

    def put(self, path: str, value: Any, *, compact: bool = False) -> None:
        if compact:
            text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        else:
            text = json.dumps(value, sort_keys=True, indent=2, ensure_ascii=False)
        data = (text + "\n").encode()
        info = zipfile.ZipInfo(path, date_time=self.time)
        info.compress_type = zipfile.ZIP_DEFLATED
        self.zip.writestr(info, data)
        if path != MANIFEST:
            self.entries.append(file_entry(path, data))

    def close(self) -> None:
        self.zip.close()


def _device_record(device: Device) -> dict[str, Any]:
    keys = []
    for key in device.keys:
        on_chain = chain_form(key)
        keys.append({
            "alg": key.alg,
            "public_key": key.public_key,
            "fingerprint": "0x" + key.fingerprint,
            "valid_from": on_chain.valid_from,
            "valid_until": on_chain.valid_until,
            "valid_from_utc": _iso(key.valid_from),
            "valid_until_utc": _iso(key.valid_until),
            "tx_hash": key.tx_hash,
        })  # fmt: skip
    return {"id": device.id, "kind": device.kind, "organisation": device.organisation_id,
            "revoked_at": _iso(device.revoked_at), "keys": keys}  # fmt: skip


def _anchored_batches(session: Session, lot: Lot) -> list[int]:
    query = (
        select(Reading.batch_index)
        .distinct()
        .join(Batch, Batch.index == Reading.batch_index)
        .where(Reading.lot == lot.id, Batch.status.in_(ANCHORED_STATES))
        .order_by(Reading.batch_index)
    )
    return list(session.scalars(query))


def _unanchored_readings(session: Session, lot: Lot) -> int:
    anchored = select(Batch.index).where(Batch.status.in_(ANCHORED_STATES))
    query = select(func.count()).select_from(Reading).where(
        Reading.lot == lot.id, Reading.batch_index.is_(None) | Reading.batch_index.not_in(anchored)
    )
    return int(session.scalar(query) or 0)


def build_evidence(
    session: Session,
    chain: ChainClient,
    lot: Lot,
    out: IO[bytes],
    *,
    interval_s: float,
    timeline: Callable[[], dict[str, Any]] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Write ``lot``'s evidence package as a zip into ``out``; returns its manifest. Raises
    :class:`~ledger.chain.base.ChainError` if the chain cannot be read (or changes under it).

    **Parameters**

    - ``chain``: the ledger's chain client (its deployment names the contracts)
    - ``interval_s``: the batch interval (for :func:`ledger.proofs.multiproof_bundle`)
    - ``timeline``: makes the lot's timeline (``GET /v1/lots/{id}/timeline``), included as ``timeline.json``
      (informative: the verifier checks the records it summarises, not it)
    """
    created = (now or datetime.now(timezone.utc)).replace(microsecond=0)
    deployment = chain.deployment
    assert deployment is not None, "the chain client has no deployment"
    contracts = {name: deployment.contracts[name] for name in (COLLATERAL, ANCHOR, REGISTRY)}
    reader = EvidenceReader(chain.reader)
    head_number = reader.latest_block()
    head = reader.block(head_number)
    if head is None:
        raise ChainError(f"block {head_number} vanished while the package was made")
    logs = reader.lot_logs(contracts[COLLATERAL], lot.chain_lot, deployment.block_number, head_number)

    writer = _Writer(out, created)
    writer.put(LOT_FILE, lots.lot_view(session, lot))
    times: dict[int, int] = {}
    events = []
    for log in logs:
        decoded = decode_lot_event(log["topics"], log["data"])
        if log["blockNumber"] not in times:
            block = reader.block(log["blockNumber"])
            if block is None:
                raise ChainError(f"block {log['blockNumber']} of a lot event is no longer on chain (a reorganisation?)")
            times[log["blockNumber"]] = block[1]
        events.append({
            "name": decoded.name, "args": decoded.args, "tx_hash": log["transactionHash"], "log_index": log["logIndex"],
            "block_number": log["blockNumber"], "block_hash": log["blockHash"], "block_timestamp": times[log["blockNumber"]],
            "block_time_utc": datetime.fromtimestamp(times[log["blockNumber"]], timezone.utc).isoformat().replace("+00:00", "Z"),
            "address": log["address"], "topics": log["topics"], "data": log["data"],
        })  # fmt: skip
    writer.put(EVENTS_FILE, events)
    tx_hashes = sorted({e["tx_hash"] for e in events})
    for tx_hash in tx_hashes:
        found = reader.transaction(tx_hash)
        if found is None:
            raise ChainError(f"transaction {tx_hash} of a lot event is no longer on chain (a reorganisation?)")
        writer.put(transaction_path(tx_hash), {"transaction": found[0], "receipt": found[1]})

    actions = list(session.scalars(select(Action).where(Action.lot_id == lot.id).order_by(Action.created_at, Action.id)))
    for position, action in enumerate(actions, start=1):
        writer.put(action_path(position, action.id), lots.action_view(action))
    devices = [session.get(Device, d.device_id) for d in lot.devices]
    for position, device in enumerate(devices, start=1):
        writer.put(device_path(position, device.id), _device_record(device))  # type: ignore[union-attr]

    readings = 0
    batches = _anchored_batches(session, lot)
    for index in batches:
        bundle = proofs.multiproof_bundle(session, index, lot.id, interval_s=interval_s)
        readings += len(bundle["readings"])
        writer.put(batch_path(index), bundle, compact=True)
    if timeline is not None:
        writer.put(TIMELINE_FILE, timeline())

    state = replay(decode_lot_event(e["topics"], e["data"]) for e in events)
    manifest = {
        "format": EVIDENCE_FORMAT,
        "created_at": _iso(created.replace(tzinfo=None)),
        "generator": GENERATOR,
        "lot": {"id": lot.id, "chain_lot": lot.chain_lot},
        "chain": {
            "chain_id": chain.chain_id,
            "contracts": contracts,
            "from_block": deployment.block_number,
            "head": {"number": head_number, "hash": head[0], "timestamp": head[1]},
        },
        "claims": {
            "state": state.as_dict(),
            "events": len(events),
            "transactions": len(tx_hashes),
            "actions": len(actions),
            "devices": len(devices),
            "readings": readings,
            "reading_batches": len(batches),
            "readings_not_anchored": _unanchored_readings(session, lot),
        },
        "files": sorted(writer.entries, key=lambda e: e["path"]),
    }
    writer.put(MANIFEST, manifest)
    writer.close()
    return manifest
