"""Sealing: the oldest unbatched readings become one OpenZeppelin-standard tree (SPEC §3).

A batch's index is the checkpoint index it will have on chain, so batches are numbered
0, 1, 2, … with no gaps. Sealing stores each reading's value index and proof, so serving a
proof later is one row read, whatever the number of stored readings.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from attestation.merkle import StandardTree
from ledger.store.db import bulk_update
from ledger.store.models import Batch, Reading

__all__ = ["batch_tree", "seal_batch"]


def seal_batch(session: Session, *, max_size: int) -> Batch | None:
    """Seal up to ``max_size`` of the oldest unbatched readings; ``None`` when there are none."""
    rows = session.execute(
        select(Reading.pk, Reading.salt, Reading.id)
        .where(Reading.batch_index.is_(None))
        .order_by(Reading.pk)
        .limit(max_size)
    ).all()
    if not rows:
        return None
    last = session.scalar(select(func.max(Batch.index)))
    index = 0 if last is None else last + 1
    tree = StandardTree.of([(salt, bytes.fromhex(digest)) for _, salt, digest in rows])
    batch = Batch(index=index, status="sealed", root=tree.root, count=len(rows))
    session.add(batch)
    session.flush()
    bulk_update(
        session,
        Reading.__table__,
        "pk",
        [{"pk": pk, "batch_index": index, "leaf_index": i, "proof": b"".join(tree.proof(i))} for i, (pk, _, _) in enumerate(rows)],
    )
    return batch


def batch_tree(session: Session, index: int) -> StandardTree:
    """Rebuild the whole tree of batch ``index`` (for exports and audits)."""
    rows = session.execute(
        select(Reading.salt, Reading.id).where(Reading.batch_index == index).order_by(Reading.leaf_index)
    ).all()
    return StandardTree.of([(salt, bytes.fromhex(digest)) for salt, digest in rows])
