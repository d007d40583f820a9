"""Anchoring: sealed batches become final checkpoints on chain, crash-safely.

Each batch moves through persisted states (``Batch.status``)::

    sealed ──sent──▶ submitted ──mined──▶ included ──finalised──▶ final
      ▲                 │  ▲                  │
      └─nonce taken─────┘  └──reorganised out─┘
                  (not mined in time: replaced, same nonce, fees +12.5%)

- **sealed → submitted.** The checkpoint transaction is signed, then recorded with its hash,
  nonce, raw bytes, fees and time, and only then broadcast (write-ahead). A crash at any point
  leaves either nothing sent or a recorded transaction that the next run looks up, sends again
  or replaces. Later batches are sent without waiting for earlier ones to be mined: the
  relayer's transactions run in nonce order, so each extends the one before.
- **submitted → included** when its receipt appears. The chain is the judge of what was
  anchored: if ``rootOf(index)`` already holds the batch's root, whichever transaction put it
  there (the original, a replacement, one whose record was lost) is found by its
  ``Checkpointed`` event, and the checkpoint is never sent twice. A checkpoint the contract
  refused because the previous one was missing goes back to ``sealed``; a different root at
  its index stops anchoring (:class:`AnchorMismatch`).
- **Stuck.** A transaction not mined ``replace_after_s`` after it was sent is replaced: same
  nonce, every fee at least 12.5% higher and no lower than the node's fees now. One the node
  no longer knows (dropped from its pool, never broadcast before a crash, reorganised out) is
  broadcast again while its nonce is next in line, and sent anew (back to ``sealed``) once
  another transaction took its nonce or a gap opened below it.
- **included → final** once the block is final: at or below the node's ``finalized`` block
  where the chain has that tag (:class:`Finality`), else ``confirmations`` blocks deep (the
  including block counts). Until then each pass checks that the block still has the recorded
  hash; if not, the receipt tells: gone means a reorganisation dropped the anchor and the batch
  goes back to ``submitted`` (and so to being sent again); in another block, its block is
  updated.
- While the node cannot be reached nothing changes state (readings are still accepted and
  sealed); the backlog is sent in one pass when it returns.

Batch indexes are checkpoint indexes, so the contract itself refuses a batch out of order or
twice; :meth:`Anchorer.reconcile` (at start) checks every stored root against ``rootOf``.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import func, select

from ledger.batching import seal_batch
from ledger.chain.base import AnchorReceipt, ChainError, ChainRevert, NonceConsumed, SignedTx
from ledger.leadership import Leadership
from ledger.metrics import observe_anchored
from ledger.store.db import Database, log_failed_round
from ledger.store.models import Batch, naive_utc

__all__ = ["AnchorMismatch", "Anchorer", "Finality"]

log = logging.getLogger(__name__)

#: Batch states that have not reached the chain for good yet, in the order they move.
PENDING = ("sealed", "submitted", "included")
#: Most passes over the pending batches in one :meth:`Anchorer.anchor_pending`.
MAX_PASSES = 50


class AnchorMismatch(RuntimeError):
    """The chain holds a different root at one of our indexes: another writer, or the wrong contract."""


@dataclass(frozen=True)
class Finality:
    """When an included checkpoint counts as final on this chain.

    ``use_finalized_tag``: ``True`` final at or below the node's ``finalized`` block; ``False``
    final ``confirmations`` blocks deep (1: as soon as it is included); ``None`` the tag if the
    node has it (asked once), else confirmations.
    """

    confirmations: int = 1
    use_finalized_tag: bool | None = False

    def __post_init__(self) -> None:
        if self.confirmations < 1:
            raise ValueError("confirmations counts the including block: at least 1")


def _now() -> datetime:
    return naive_utc(datetime.now(timezone.utc))


class Anchorer:
    """Seals a batch every ``interval_s`` and moves every pending batch towards ``final``, in index order.

    With a :class:`~ledger.leadership.Leadership`, the loop works only while this process
    holds the lease, so any number of instances can run it against one database: one anchors,
    the others take over within an interval when it dies.
    """

    def __init__(
        self,
        db: Database,
        chain: Any,
        *,
        interval_s: float,
        max_size: int,
        finality: Finality = Finality(),
        replace_after_s: float = 90.0,
        receipt_wait_s: float | None = None,
        leadership: Leadership | None = None,
    ) -> None:
        """``receipt_wait_s``: how long one pass waits for the receipts of what it sent (default
        ``interval_s``, at most 5 s), so that on an instant-mining dev chain a batch is final in one tick."""
        self.db = db
        self.chain = chain
        self.interval_s = interval_s
        self.max_size = max_size
        self.finality = finality
        self.replace_after_s = replace_after_s
        self.receipt_wait_s = min(interval_s, 5.0) if receipt_wait_s is None else receipt_wait_s
        self.leadership = leadership
        self.leading = False  # this process holds the lease and has reconciled with the chain
        self.last_error: str | None = None
        self._use_tag = finality.use_finalized_tag
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- one step at a time (tests call these directly) --------------------------------------

    def seal(self) -> Batch | None:
        with self.db.session() as session:
            return seal_batch(session, max_size=self.max_size)

    def reconcile(self) -> None:
        """Bring stored batch states in line with what the chain holds (run at start).

        Batches anchored in another contract (a fresh dev chain, a new deployment) are sealed again;
        checkpoints on chain must hold our roots; an anchor the chain lost while we were away (a
        reorganisation, a node reset) goes back to ``submitted`` if the node still holds its
        transaction, else to ``sealed``.
        """
        size = self.chain.size()
        chain_id, contract = self.chain.chain_id, self.chain.anchor_address
        with self.db.session() as session:
            for batch in session.scalars(select(Batch).order_by(Batch.index)):
                if batch.chain_id not in (None, chain_id) or batch.contract not in (None, contract):
                    log.warning("batch %d was anchored in another contract; it will be anchored in %s", batch.index, contract)
                    _reset(batch)
                elif batch.index < size:
                    self._require_root(batch.index, batch.root)
                elif batch.status in ("included", "final"):
                    log.warning("checkpoint %d is not on chain any more; it will be anchored again", batch.index)
                    if batch.tx_hash and self.chain.transaction_status(batch.tx_hash) == "pending":
                        batch.status = "submitted"
                    else:
                        _reset(batch)
        self.chain.resync_nonce()  # the chain may have forgotten transactions this process counted

    def anchor_pending(self) -> int:
        """Move every batch that is not final as far as the chain lets it now, waiting up to
        ``receipt_wait_s`` for the receipts of what was sent; returns how many became final."""
        finals = 0
        for _ in range(MAX_PASSES):  # a batch takes a handful of steps; never spin on a chain that flips
            changed, waiting, became_final = self._pass()
            finals += became_final
            if changed:
                continue
            if not waiting or not self._await_a_receipt():
                break
        return finals

    def _await_a_receipt(self) -> bool:
        """Poll the receipts of the submitted batches (only those: one call each) for up to
        ``receipt_wait_s``, at growing intervals; True as soon as one appears."""
        with self.db.session() as session:
            hashes = list(session.scalars(select(Batch.tx_hash).where(Batch.status == "submitted")))
        deadline = time.monotonic() + self.receipt_wait_s
        pause = 0.01
        while time.monotonic() < deadline:
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 2, 0.5)
            if any(self.chain.transaction_status(h) == "mined" for h in hashes if h):
                return True
        return False

    def tick(self) -> None:
        self.seal()
        self.anchor_pending()

    def pending_counts(self) -> dict[str, int]:
        """How many batches are sealed, submitted and included (not final yet)."""
        with self.db.session() as session:
            rows = session.execute(
                select(Batch.status, func.count()).where(Batch.status.in_(PENDING)).group_by(Batch.status)
            ).all()
        return {status: 0 for status in PENDING} | {status: int(n) for status, n in rows}

    # -- the state machine -----------------------------------------------------------------------

    def _pass(self) -> tuple[bool, bool, int]:
        """Advance each pending batch once, oldest first: (anything changed, anything awaits a
        receipt, how many became final)."""
        with self.db.session() as session:
            batches = list(session.scalars(select(Batch).where(Batch.status.in_(PENDING)).order_by(Batch.index)))
        changed = waiting = False
        finals = 0
        heights = _Heights(self.chain)
        previous_sealed = False
        for batch in batches:
            if batch.status == "sealed":
                if previous_sealed:
                    break  # its predecessor must be sent first
                step_changed, step_waiting = self._send(batch)
            elif batch.status == "submitted":
                step_changed, step_waiting = self._follow_submitted(batch)
            else:
                step_changed, step_waiting = self._follow_included(batch, heights)
                finals += self._status(batch.index) == "final"
            changed |= step_changed
            waiting |= step_waiting
            previous_sealed = self._status(batch.index) == "sealed"
        return changed, waiting, finals

    def _send(self, batch: Batch) -> tuple[bool, bool]:
        size = self.chain.size()
        if size > batch.index:  # on chain already, by a transaction we lost track of
            return self._recognise(batch.index, batch.root), False
        if size < batch.index and self._status(batch.index - 1) not in ("submitted", "included"):
            # a final checkpoint below it is gone (a node reset, a reorganisation deeper than finality)
            log.error("chain has %d checkpoints but batch %d is next: reconciling", size, batch.index)
            self.reconcile()
            if self._status(batch.index - 1) not in PENDING:
                raise AnchorMismatch(f"chain has {size} checkpoints but batch {batch.index} is next: earlier batches are missing")
            return True, False
        self.chain.send_checkpoint(batch.index, batch.root, record=lambda signed: self._submitted(batch.index, signed))
        return True, True

    def _follow_submitted(self, batch: Batch) -> tuple[bool, bool]:
        assert batch.tx_hash is not None and batch.nonce is not None
        try:
            receipt = self.chain.checkpoint_receipt(batch.tx_hash, timeout=0)
        except ChainRevert as exc:
            return self._reverted(batch, exc), False
        if receipt is not None:
            self._included(batch.index, receipt)
            return True, False
        if self.chain.size() > batch.index:  # anchored by another transaction of ours
            return self._recognise(batch.index, batch.root), False
        # not mined: wait, send it again, replace it, or send the checkpoint anew
        status = self.chain.transaction_status(batch.tx_hash)
        due = batch.sent_at is None or _now() - batch.sent_at >= timedelta(seconds=self.replace_after_s)
        if status == "pending" and not due:
            return False, True
        mined, pending = self.chain.account_nonces()
        if batch.nonce < mined:
            return self._nonce_consumed(batch), False
        if batch.nonce > pending:  # a gap below its nonce: it would never run
            log.warning("checkpoint %d (nonce %d) waits behind a nonce gap; sending it anew", batch.index, batch.nonce)
            self._back_to_sealed(batch.index)
            return True, False
        if status == "unknown" and batch.nonce == pending and batch.raw_tx and not due:
            # never broadcast (a crash), or dropped (a reorganisation, the node's pool): send it again
            try:
                if self.chain.rebroadcast(batch.raw_tx):
                    return False, True
            except NonceConsumed:
                return self._nonce_consumed(batch), False
            log.warning("checkpoint %d: the node refuses the fees of %s now; replacing it", batch.index, batch.tx_hash)
        elif not due:  # another pending transaction holds its nonce for now
            return False, True
        previous = SignedTx(batch.tx_hash, batch.nonce, batch.raw_tx or b"", batch.fee_cap or 0, batch.tip)
        try:
            signed = self.chain.replace_checkpoint(
                batch.index, batch.root, previous, record=lambda s: self._submitted(batch.index, s, replacing=True)
            )
        except NonceConsumed:
            return self._nonce_consumed(batch), False
        log.warning("checkpoint %d not mined: replaced %s by %s (nonce %d, fee cap %d -> %d wei)",
                    batch.index, batch.tx_hash, signed.tx_hash, signed.nonce, previous.fee_cap, signed.fee_cap)  # fmt: skip
        return True, True

    def _follow_included(self, batch: Batch, heights: _Heights) -> tuple[bool, bool]:
        assert batch.tx_hash is not None
        if batch.block_number is not None and heights.block_hash(batch.block_number) == batch.block_hash:
            # its block is still on the chain, so is the checkpoint: only finality can change
            if not self._is_final(batch.block_number, heights):
                return False, False
            self._final(batch.index, batch.block_number)
            return True, False
        try:
            receipt = self.chain.checkpoint_receipt(batch.tx_hash, timeout=0)
        except ChainRevert as exc:  # re-executed after a reorganisation, and refused this time
            return self._reverted(batch, exc), False
        if receipt is None:
            log.warning("checkpoint %d (%s, block %s) was reorganised out of the chain; it will be anchored again",
                        batch.index, batch.tx_hash, batch.block_number)  # fmt: skip
            if batch.raw_tx is None:  # a transaction found on chain, not one we signed and kept: send anew
                self._back_to_sealed(batch.index)
                return True, False
            with self.db.session() as session:
                row = session.get(Batch, batch.index)
                row.status, row.sent_at = "submitted", _now()
                row.block_number = row.block_hash = row.anchored_at = None
            return True, True
        changed = False
        if receipt.block_hash != batch.block_hash:
            if batch.block_hash is not None:
                log.warning("checkpoint %d moved from block %s to %d (%s) in a reorganisation",
                            batch.index, batch.block_hash, receipt.block_number, receipt.block_hash)  # fmt: skip
            self._included(batch.index, receipt)
            changed = True
        if self._is_final(receipt.block_number, heights):
            self._final(batch.index, receipt.block_number)
            changed = True
        return changed, False

    def _is_final(self, block_number: int, heights: _Heights) -> bool:
        if self._use_tag is None:
            self._use_tag = heights.finalized() is not None
            log.info("finality on chain %s: %s", self.chain.chain_id,
                     "the node's finalized block" if self._use_tag else f"{self.finality.confirmations} confirmations")  # fmt: skip
        if self._use_tag:
            finalized = heights.finalized()
            return finalized is not None and block_number <= finalized
        return heights.latest() - block_number + 1 >= self.finality.confirmations

    # -- transitions -------------------------------------------------------------------------------

    def _submitted(self, index: int, signed: SignedTx, *, replacing: bool = False) -> None:
        """Record a signed checkpoint transaction before it is broadcast."""
        with self.db.session() as session:
            row = session.get(Batch, index)
            row.status, row.tx_hash, row.nonce, row.raw_tx = "submitted", signed.tx_hash, signed.nonce, signed.raw
            row.fee_cap, row.tip, row.sent_at = signed.fee_cap, signed.tip, _now()
            row.chain_id, row.contract = self.chain.chain_id, self.chain.anchor_address
            row.replacements = (row.replacements or 0) + (1 if replacing else 0)

    def _included(self, index: int, receipt: AnchorReceipt) -> None:
        with self.db.session() as session:
            row = session.get(Batch, index)
            row.status = "included"
            if receipt.tx_hash != row.tx_hash:  # another transaction than the one recorded: forget that one
                row.nonce = row.raw_tx = row.fee_cap = row.tip = None
            row.tx_hash, row.block_number, row.block_hash = receipt.tx_hash, receipt.block_number, receipt.block_hash
            row.chain_id, row.contract = self.chain.chain_id, self.chain.anchor_address
            first_time = row.anchored_at is None
            row.anchored_at = row.anchored_at or _now()
            sealed_at, anchored_at, count = row.sealed_at, row.anchored_at, row.count
        if first_time:  # a batch moved to another block by a reorganisation is not counted twice
            observe_anchored(sealed_at, anchored_at, count)
        log.info("anchored batch %d (%s) in block %d", index, receipt.tx_hash, receipt.block_number)

    def _final(self, index: int, block_number: int) -> None:
        with self.db.session() as session:
            row = session.get(Batch, index)
            row.status, row.final_at = "final", _now()
        log.info("checkpoint %d is final (block %d)", index, block_number)

    def _recognise(self, index: int, root: bytes) -> bool:
        """The chain has checkpoint ``index``: if it is our root, take its transaction as ours."""
        self._require_root(index, root)
        receipt = self.chain.find_checkpoint(index)
        if receipt is None:  # the event is not visible yet (a node behind its own state): next pass
            return False
        self._included(index, receipt)
        return True

    def _reverted(self, batch: Batch, exc: ChainRevert) -> bool:
        if exc.error == "ReadingAnchorAlreadyAnchored":  # a transaction of ours got there first
            return self._recognise(batch.index, batch.root)
        if exc.error == "ReadingAnchorMissingPrevious":  # ran before its predecessor: send it again
            log.warning("checkpoint %d ran before checkpoint %d existed; sending it again", batch.index, batch.index - 1)
            self._back_to_sealed(batch.index)
            return True
        raise exc

    def _nonce_consumed(self, batch: Batch) -> bool:
        """Another mined transaction took the batch's nonce: the chain has it, or it is sent anew."""
        if self.chain.size() > batch.index:
            return self._recognise(batch.index, batch.root)
        log.warning("the nonce %d of checkpoint %d was taken by another transaction; sending it anew", batch.nonce, batch.index)
        self._back_to_sealed(batch.index)
        return True

    def _back_to_sealed(self, index: int) -> None:
        with self.db.session() as session:
            _reset(session.get(Batch, index))
        self.chain.resync_nonce()

    def _require_root(self, index: int, root: bytes) -> None:
        if self.chain.root_of(index) != root:
            raise AnchorMismatch(f"checkpoint {index} on chain has another root than batch {index}")

    def _status(self, index: int) -> str | None:
        with self.db.session() as session:
            batch = session.get(Batch, index)
            return None if batch is None else batch.status

    # -- the background loop -------------------------------------------------------------------

    def start(self) -> None:
        if self._lead():
            self.reconcile()  # at once, so a chain that disagrees with the store fails the start
            self.leading = True
        self._thread = threading.Thread(target=self._run, name="anchorer", daemon=True)
        self._thread.start()

    def _lead(self) -> bool:
        """Whether this process may anchor now (takes the lease if it is free). A lease lost, or
        lost and taken again (a new term: the database dropped it), means reconciling again."""
        if self.leadership is None:
            return True
        term = self.leadership.term
        try:
            got = self.leadership.acquire()
        except BaseException:
            self.leading = False
            raise
        if not got or self.leadership.term != term:
            self.leading = False
        return got

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
                backoff = min(backoff * 2, 30.0)
                log.error("anchoring failed (retrying in %.0f s): %s", backoff, exc)
            except Exception as exc:  # never let the loop die silently
                backoff = min(backoff * 2, 30.0)
                self.last_error = log_failed_round(log, "anchoring", exc)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self.leadership is not None:
            self.leadership.release()
        self.leading = False


class _Heights:
    """The chain's latest and finalized block numbers and block hashes, each read at most once per pass."""

    def __init__(self, chain: Any) -> None:
        self._chain = chain
        self._latest: int | None = None
        self._finalized: tuple[int | None] | None = None
        self._hashes: dict[int, str | None] = {}

    def block_hash(self, number: int) -> str | None:
        if number not in self._hashes:
            self._hashes[number] = self._chain.block_hash(number)
        return self._hashes[number]

    def latest(self) -> int:
        if self._latest is None:
            self._latest = self._chain.block_number()
        return self._latest

    def finalized(self) -> int | None:
        if self._finalized is None:
            self._finalized = (self._chain.finalized_block(),)
        return self._finalized[0]


def _reset(batch: Batch) -> None:
    """Back to ``sealed``: forget every transaction of the batch."""
    batch.status = "sealed"
    batch.tx_hash = batch.nonce = batch.raw_tx = batch.fee_cap = batch.tip = batch.sent_at = None
    batch.block_number = batch.block_hash = batch.anchored_at = batch.final_at = None
    batch.contract = batch.chain_id = None
