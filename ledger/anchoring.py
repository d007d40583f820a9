"""Anchoring: sealed batches become checkpoints on chain, crash-safely.

Each batch moves ``sealed → submitted → confirmed``; the transaction hash and nonce are
stored *before* waiting for the receipt, so a restart at any point resumes:

- a ``submitted`` batch whose transaction was mined is confirmed from its receipt;
- a batch whose checkpoint is already on chain (the process died between sending and
  recording) is recognised by comparing ``rootOf(index)`` with its root: never anchored twice;
- batches the chain does not have (a fresh embedded chain, a reorg) go back to ``sealed``
  and are anchored again, in order.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import select

from ledger.batching import seal_batch
from ledger.chain.base import ChainError
from ledger.leadership import Leadership
from ledger.metrics import observe_anchored
from ledger.store.db import Database
from ledger.store.models import Batch, naive_utc

__all__ = ["Anchorer"]

log = logging.getLogger(__name__)


class AnchorMismatch(RuntimeError):
    """The chain holds a different root at one of our indexes: another writer, or the wrong contract."""


class Anchorer:
    """Seals a batch every ``interval_s`` and anchors sealed batches in index order.

    With a :class:`~ledger.leadership.Leadership`, the loop works only while this process
    holds the lease, so any number of instances can run it against one database: one anchors,
    the others take over within an interval when it dies.
    """

    def __init__(self, db: Database, chain: Any, *, interval_s: float, max_size: int,
                 leadership: Leadership | None = None) -> None:
        self.db = db
        self.chain = chain
        self.interval_s = interval_s
        self.max_size = max_size
        self.leadership = leadership
        self.leading = False  # this process holds the lease and has reconciled with the chain
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- one step at a time (tests call these directly) --------------------------------------

    def seal(self) -> Batch | None:
        with self.db.session() as session:
            return seal_batch(session, max_size=self.max_size)

    def reconcile(self) -> None:
        """Bring stored batch states in line with what the chain holds (run at start)."""
        size, _ = self.chain.head()
        contract = self.chain.anchor_address
        with self.db.session() as session:
            for batch in session.scalars(select(Batch).order_by(Batch.index)):
                if batch.index >= size or batch.contract not in (None, contract):
                    if batch.status != "sealed":
                        log.warning("batch %d is not on chain %s any more; it will be anchored again", batch.index, contract)
                    batch.status, batch.tx_hash, batch.nonce, batch.block_number = "sealed", None, None, None
                    batch.contract = batch.chain_id = None
                elif self.chain.root_of(batch.index) != batch.root:
                    raise AnchorMismatch(f"checkpoint {batch.index} on chain has another root than batch {batch.index}")

    def anchor_pending(self) -> int:
        """Anchor every sealed or submitted batch, oldest first; returns how many were confirmed."""
        confirmed = 0
        while True:
            with self.db.session() as session:
                batch = session.scalar(select(Batch).where(Batch.status != "confirmed").order_by(Batch.index).limit(1))
            if batch is None:
                return confirmed
            self._anchor(batch)
            confirmed += 1

    def _anchor(self, batch: Batch) -> None:
        size, head = self.chain.head()
        if batch.status == "submitted" and batch.tx_hash:
            receipt = self.chain.checkpoint_receipt(batch.tx_hash, timeout=0)
            if receipt is not None:
                return self._confirm(batch.index, receipt)
            # never mined (dropped, or queued behind a nonce gap after a crash): re-read the
            # nonce from the chain so the checkpoint sent below can be mined
            self.chain.resync_nonce()
        if size > batch.index:  # sent before a crash, or confirmed in another run
            if self.chain.root_of(batch.index) != batch.root:
                raise AnchorMismatch(f"checkpoint {batch.index} on chain has another root than batch {batch.index}")
            receipt = self.chain.find_checkpoint(batch.index)
            return self._confirm(batch.index, receipt)
        if size < batch.index:
            raise AnchorMismatch(f"chain has {size} checkpoints but batch {batch.index} is next: earlier batches are missing")
        tx_hash, nonce = self.chain.send_checkpoint(head, batch.root, batch.count)
        with self.db.session() as session:
            row = session.get(Batch, batch.index)
            row.status, row.tx_hash, row.nonce = "submitted", tx_hash, nonce
            row.chain_id, row.contract = self.chain.chain_id, self.chain.anchor_address
        receipt = self.chain.wait_checkpoint(tx_hash)
        self._confirm(batch.index, receipt)

    def _confirm(self, index: int, receipt: Any) -> None:
        with self.db.session() as session:
            row = session.get(Batch, index)
            row.status = "confirmed"
            row.tx_hash, row.block_number, row.head = receipt.tx_hash, receipt.block_number, receipt.head
            row.chain_id, row.contract = self.chain.chain_id, self.chain.anchor_address
            row.anchored_at = naive_utc(datetime.now(timezone.utc))
            sealed_at, anchored_at, count = row.sealed_at, row.anchored_at, row.count
        observe_anchored(sealed_at, anchored_at, count)
        log.info("anchored batch %d (%s) in block %d", index, receipt.tx_hash, receipt.block_number)

    def tick(self) -> None:
        self.seal()
        self.anchor_pending()

    # -- the background loop -------------------------------------------------------------------

    def start(self) -> None:
        if self._lead():
            self.reconcile()  # at once, so a chain that disagrees with the store fails the start
            self.leading = True
        self._thread = threading.Thread(target=self._run, name="anchorer", daemon=True)
        self._thread.start()

    def _lead(self) -> bool:
        """Whether this process may anchor now (takes the lease if it is free)."""
        if self.leadership is None or self.leadership.acquire():
            return True
        self.leading = False  # a lost lease means reconciling again when it is won back
        return False

    def _run(self) -> None:
        backoff = self.interval_s
        while not self._stop.wait(self.interval_s if self.last_error is None else backoff):
            try:
                if not self._lead():
                    continue
                if not self.leading:
                    self.reconcile()  # another instance may have anchored while we followed
                    self.leading = True
                self.tick()
                self.last_error, backoff = None, self.interval_s
            except (ChainError, AnchorMismatch, OSError) as exc:
                self.last_error = str(exc)
                backoff = min(backoff * 2, 60.0)
                log.error("anchoring failed (retrying in %.0f s): %s", backoff, exc)
            except Exception as exc:  # never let the loop die silently
                self.last_error = repr(exc)
                backoff = min(backoff * 2, 60.0)
                log.exception("anchoring failed unexpectedly")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self.leadership is not None:
            self.leadership.release()
        self.leading = False
