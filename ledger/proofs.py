"""Proof bundles (SPEC §4) from stored readings and their anchored batches."""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from attestation.bundle import build_bundle
from ledger.errors import NotFound, ProofPending
from ledger.store.models import Batch, DeviceKeyRecord, Reading, utc

__all__ = ["get_reading", "proof_bundle"]


def get_reading(session: Session, reading_id: str) -> Reading:
    reading = session.scalar(select(Reading).where(Reading.id == reading_id.lower()))
    if reading is None:
        raise NotFound(f"no reading with id {reading_id}: ids are the 64-hex SHA-256 digest of the payload", code="reading_not_found")
    return reading


def proof_bundle(session: Session, reading_id: str, *, interval_s: float) -> dict[str, Any]:
    """The self-contained bundle a bank verifies against the chain alone.

    Raises :class:`ProofPending` (with a retry delay) until the reading's batch is included in a
    block. ``anchor.status`` then says ``included`` or, once the block is final, ``final``: a
    reorganisation may still move an included anchor to another block, but never changes
    ``rootOf(index)``, which is all a verifier reads.
    """
    reading = get_reading(session, reading_id)
    batch = session.get(Batch, reading.batch_index) if reading.batch_index is not None else None
    if batch is None or batch.status not in ("included", "final"):
        waited = (datetime.now(timezone.utc) - utc(reading.received_at)).total_seconds()
        retry = max(1, math.ceil(interval_s - waited % interval_s)) if batch is None else 1
        raise ProofPending(
            f"reading {reading.id} is stored but not anchored yet ({'waiting for the next batch' if batch is None else 'batch ' + str(batch.index) + ' ' + batch.status})",
            retry_after=retry,
        )
    key = session.get(DeviceKeyRecord, reading.key_id)
    proof = reading.proof or b""
    return build_bundle(
        reading=json.loads(reading.envelope),
        salt=reading.salt,
        digest=bytes.fromhex(reading.id),
        proof=[proof[i : i + 32] for i in range(0, len(proof), 32)],
        root=batch.root,
        device={"id": reading.device_id, "alg": key.alg, "public_key": key.public_key},
        anchor={
            "chain_id": batch.chain_id,
            "contract": batch.contract,
            "index": batch.index,
            "tx_hash": batch.tx_hash,
            "block_number": batch.block_number,
            "status": batch.status,
        },
    )
