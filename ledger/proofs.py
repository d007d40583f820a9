"""Proof bundles (SPEC §4), multiproof bundles and tree exports from stored readings and batches.

- :func:`proof_bundle`: one reading and its single-leaf proof (``pledgeledger.proof/1``);
- :func:`multiproof_bundle`: every reading of one lot in one batch with one OpenZeppelin
  multiproof (``pledgeledger.multiproof/1``, see :mod:`attestation.bundle`);
  :func:`readings_multiproof` does it for any readings of one batch (production answers);
- :func:`tree_export`: a whole batch as an OpenZeppelin ``StandardMerkleTree.dump()``, salts
  included (auditors only: the salts of every reading in it are disclosed).
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timezone
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from attestation.bundle import MULTIPROOF_FORMAT, build_bundle
from attestation.encoding import to_hex
from attestation.merkle import leaf_hash
from ledger.batching import batch_tree
from ledger.errors import NotFound, ProofPending
from ledger.store.db import storable_text
from ledger.store.models import ANCHORED_STATES, Batch, DeviceKeyRecord, Reading, utc

__all__ = [
    "get_batch",
    "get_reading",
    "multiproof_bundle",
    "proof_bundle",
    "readings_multiproof",
    "split_proof",
    "tree_export",
]

#: ``batches.index`` is a 32-bit integer column; a larger index names no batch (and PostgreSQL
#: would refuse to compare it).
MAX_BATCH_INDEX = 2**31 - 1
#: A reading's id: the 64-hex SHA-256 digest of its payload (either case accepted).
_READING_ID = re.compile(r"[0-9a-fA-F]{64}")


def get_reading(session: Session, reading_id: str) -> Reading:
    reading = session.scalar(select(Reading).where(Reading.id == reading_id.lower())) if _READING_ID.fullmatch(reading_id) else None
    if reading is None:
        raise NotFound(f"no reading with id {reading_id}: ids are the 64-hex SHA-256 digest of the payload", code="reading_not_found")
    return reading


def get_batch(session: Session, index: int) -> Batch:
    batch = session.get(Batch, index) if 0 <= index <= MAX_BATCH_INDEX else None
    if batch is None:
        raise NotFound(f"no batch {index}: batches are numbered 0, 1, 2, … as they are sealed", code="batch_not_found")
    return batch


def split_proof(proof: bytes | None) -> list[bytes]:
    """A stored proof (concatenated 32-byte siblings) as its list of siblings."""
    proof = proof or b""
    return [proof[i : i + 32] for i in range(0, len(proof), 32)]


def _anchor(batch: Batch) -> dict[str, Any]:
    return {
        "chain_id": batch.chain_id,
        "contract": batch.contract,
        "index": batch.index,
        "tx_hash": batch.tx_hash,
        "block_number": batch.block_number,
        "status": batch.status,
    }


def _entry(reading: Reading, key: DeviceKeyRecord) -> dict[str, Any]:
    """What a bundle says about one reading: the reading as received, digest, salt, leaf, device key."""
    digest = bytes.fromhex(reading.id)
    return {
        "reading": json.loads(reading.envelope),
        "digest": to_hex(digest),
        "salt": to_hex(reading.salt),
        "leaf": to_hex(leaf_hash(reading.salt, digest)),
        "device": {"id": reading.device_id, "alg": key.alg, "public_key": key.public_key},
    }


def _pending(what: str, batch: Batch | None, received_at: datetime, interval_s: float) -> ProofPending:
    waited = (datetime.now(timezone.utc) - utc(received_at)).total_seconds()
    retry = max(1, math.ceil(interval_s - waited % interval_s)) if batch is None else 1
    state = "waiting for the next batch" if batch is None else f"batch {batch.index} {batch.status}"
    return ProofPending(f"{what} stored but not anchored yet ({state})", retry_after=retry)


def proof_bundle(session: Session, reading_id: str, *, interval_s: float) -> dict[str, Any]:
    """The self-contained bundle a bank verifies against the chain alone.

    Raises :class:`ProofPending` (with a retry delay) until the reading's batch is included in a
    block. ``anchor.status`` then says ``included`` or, once the block is final, ``final``: a
    reorganisation may still move an included anchor to another block, but never changes
    ``rootOf(index)``, which is all a verifier reads.
    """
    reading = get_reading(session, reading_id)
    batch = session.get(Batch, reading.batch_index) if reading.batch_index is not None else None
    if batch is None or batch.status not in ANCHORED_STATES:
        raise _pending(f"reading {reading.id} is", batch, reading.received_at, interval_s)
    entry = _entry(reading, session.get(DeviceKeyRecord, reading.key_id))
    return build_bundle(
        reading=entry["reading"],
        salt=reading.salt,
        digest=bytes.fromhex(reading.id),
        proof=split_proof(reading.proof),
        root=batch.root,
        device=entry["device"],
        anchor=_anchor(batch),
    )


def multiproof_bundle(session: Session, index: int, lot: str, *, interval_s: float) -> dict[str, Any]:
    """Every reading of ``lot`` in batch ``index`` with one OpenZeppelin multiproof.

    ``readings`` are in the order of the multiproof's leaves, and ``multiproof`` is what
    ``StandardMerkleTree.getMultiProof`` returns (``leaves`` as ``[salt, digest]`` values).
    Raises :class:`NotFound` for an unknown batch or a lot with no readings in it, and
    :class:`ProofPending` until the batch is confirmed.
    """
    batch = get_batch(session, index)
    if batch.status not in ANCHORED_STATES:
        raise _pending(f"batch {index} is", batch, batch.sealed_at, interval_s)
    rows = list(session.scalars(select(Reading).where(Reading.batch_index == index, Reading.lot == lot))) if storable_text(lot) else []
    if not rows:
        raise NotFound(f"batch {index} holds no reading of lot {lot!r}", code="lot_not_in_batch")
    return readings_multiproof(session, batch, rows, about={"lot": lot})


def readings_multiproof(
    session: Session,
    batch: Batch,
    rows: Sequence[Reading],
    *,
    about: dict[str, str],
    keys: Mapping[int, DeviceKeyRecord] | None = None,
) -> dict[str, Any]:
    """A ``pledgeledger.multiproof/1`` bundle of ``rows``, readings of ``batch`` (anchored: the
    caller checks), with one OpenZeppelin multiproof.

    ``about`` is ``{"lot": LOT}`` or ``{"device": ID}``: what every reading is of
    (:func:`attestation.bundle.multiproof_scope`). ``keys`` may hold the rows' device keys by id,
    else they are read. One reading's multiproof is its stored proof (all flags ``false``, what
    ``getMultiProof`` gives for one leaf), so only several readings rebuild the batch's tree.
    """
    if keys is None or not all(r.key_id in keys for r in rows):
        keys = {k.id: k for k in session.scalars(select(DeviceKeyRecord).where(DeviceKeyRecord.id.in_({r.key_id for r in rows})))}
    if len(rows) == 1:
        ordered, proof = list(rows), split_proof(rows[0].proof)
        flags = [False] * len(proof)
    else:
        tree = batch_tree(session, batch.index)
        value_of = {digest.hex(): i for i, (_, digest) in enumerate(tree.values)}
        order, multiproof = tree.multiproof([value_of[r.id] for r in rows])
        by_id = {r.id: r for r in rows}
        ordered = [by_id[tree.values[i][1].hex()] for i in order]
        proof, flags = multiproof.proof, multiproof.proof_flags
    entries = [_entry(row, keys[row.key_id]) for row in ordered]
    return {
        "format": MULTIPROOF_FORMAT,
        **about,
        "readings": entries,
        "multiproof": {
            "leaves": [[e["salt"], e["digest"]] for e in entries],
            "proof": [to_hex(p) for p in proof],
            "proofFlags": flags,
        },
        "root": to_hex(batch.root),
        "anchor": _anchor(batch),
    }


def tree_export(session: Session, index: int) -> dict[str, Any]:
    """Batch ``index`` as OpenZeppelin ``StandardMerkleTree.dump()`` JSON (``standard-v1``).

    ``StandardMerkleTree.load()`` accepts it as it is; the extra ``anchor`` member (ignored by
    ``load``) says where its root is anchored: compare ``tree[0]`` with ``rootOf(anchor.index)``.
    """
    batch = get_batch(session, index)
    return {**batch_tree(session, index).dump(), "anchor": _anchor(batch)}
