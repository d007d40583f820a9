"""Sending complete actions through the relayer, crash-safe (SPEC §8: collecting → submitted → confirmed | failed).

The last signature's request submits the action itself and waits a little for the receipt
(:func:`submit_complete`); whatever that request leaves unfinished (the chain is slow or down, the
process dies) the background :class:`Submitter` finishes (:func:`reconcile`, also run at start). Each
step is committed before the next, so a crash anywhere leaves a state that says what to do:

::

    collecting, every signature in ──claim──▶ submitted (submitted_at = claim) ──record──▶ submitted + tx_hash, raw_tx
           │                                        │ no tx_hash after CLAIM_LEASE: never sent ─▶ send (new claim)
           └─ deadline passed: expired              ▼
                                             mined: confirmed (lot refreshed) | reverted: failed (contract's error)
                                             gas estimate reverted: failed, nothing sent (tx_hash null)

- **Claim.** ``collecting → submitted`` is one conditional UPDATE: of two requests, instances or the
  submitter racing for one action, one sends it.
- **Write-ahead.** The signed transaction (hash and raw bytes) is committed *before* it is broadcast,
  and only while the claim is still the one this sender made (the claim time is a fencing token), so a
  sender that lost its claim sends nothing.
- **After a crash** a ``submitted`` action is reconciled against the chain by its recorded transaction:
  mined → its outcome; in the node's pool → wait; unknown to the node → the *same* raw transaction is
  broadcast again (same hash: it can be mined once only); only if that transaction can never be mined
  (its relayer nonce was taken, its fees are refused) is the action signed into a new transaction.
  Nothing is ever sent twice; and even a double send could not execute a transition twice, because
  each signature commits to its signer's nonce, which the contract consumes.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import select, update

from ledger import lots, org_chain
from ledger.actions import is_complete
from ledger.chain.base import ChainError, ChainRevert, NonceConsumed, SignedTx
from ledger.chain.collateral import CollateralClient
from ledger.leadership import Leadership
from ledger.store.db import Database, log_failed_round
from ledger.store.models import Action, naive_utc, utc

__all__ = ["CLAIM_LEASE", "SUBMIT_WAIT_S", "Submitter", "await_outcome", "reconcile", "submit_complete"]

log = logging.getLogger(__name__)

#: How long the request that completes an action waits for its receipt before answering ``submitted``.
SUBMIT_WAIT_S = 15.0
#: A claimed action with no recorded transaction after this long was never sent: another sender takes it.
CLAIM_LEASE = timedelta(seconds=120)


class _Superseded(Exception):
    """Another sender took over the action: send nothing."""


def _now() -> datetime:
    return datetime.now(timezone.utc)


def submit_complete(db: Database, collateral: CollateralClient, action_id: str, *, wait_s: float = SUBMIT_WAIT_S) -> None:
    """If the action has every signature and nobody sends it yet, claim it, send it and wait up to ``wait_s``
    seconds for the outcome. Safe to call from any process at any time, any number of times."""
    claim = _claim(db, action_id, "collecting", None)
    if claim is not None:
        _send(db, collateral, action_id, claim, wait_s)


def await_outcome(db: Database, collateral: CollateralClient, action_id: str, *, wait_s: float) -> None:
    """Wait up to ``wait_s`` seconds for a ``submitted`` action's recorded transaction and record its outcome,
    whichever process sent it (a caller that needs the outcome now need not wait for the submitter's pass)."""
    with db.session() as session:
        action = session.get(Action, action_id)
        tx_hash = action.tx_hash if action is not None and action.status == "submitted" else None
    if tx_hash is not None:
        _settle(db, collateral, action_id, tx_hash, wait_s)


def _claim(db: Database, action_id: str, status: str, previous: datetime | None) -> datetime | None:
    """``status → submitted`` with a fresh claim time; from ``submitted`` only if the claim is still ``previous``."""
    claim = naive_utc(_now())
    with db.session() as session:
        action = session.get(Action, action_id)
        if action is None or action.status != status or not is_complete(action):
            return None
        if status == "collecting" and utc(action.deadline) <= _now():
            return None  # the contract would refuse it: reconcile() marks it expired
        condition = [Action.id == action_id, Action.status == status]
        if status == "submitted":
            condition.append(Action.submitted_at == previous if previous is not None else Action.submitted_at.is_(None))
        done = session.execute(
            update(Action).where(*condition).values(status="submitted", submitted_at=claim, tx_hash=None, raw_tx=None)
            .execution_options(synchronize_session=False)
        )  # fmt: skip
        return claim if done.rowcount == 1 else None


def _send(db: Database, collateral: CollateralClient, action_id: str, claim: datetime, wait_s: float) -> None:
    with db.session() as session:
        action = session.get(Action, action_id)
        typed = json.loads(action.typed_data)
        signatures = [bytes.fromhex(s.signature[2:]) for s in sorted(action.signatures, key=lambda s: s.position)]

    def record(signed: SignedTx) -> None:
        with db.session() as session:
            done = session.execute(
                update(Action).where(Action.id == action_id, Action.status == "submitted", Action.submitted_at == claim)
                .values(tx_hash=signed.tx_hash, raw_tx=signed.raw).execution_options(synchronize_session=False)
            )  # fmt: skip
            if done.rowcount != 1:
                raise _Superseded(action_id)

    try:
        signed = collateral.send(typed, signatures, record=record)
    except _Superseded:
        log.info("action %s is sent by another process", action_id)
        return
    except ChainRevert as exc:  # the gas estimate ran the transition: refused, nothing sent
        _fail(db, action_id, exc, claim=claim)
        return
    except ChainError as exc:  # node down, or it may or may not have the transaction: reconcile() looks again
        log.warning("action %s not sent yet: %s; the submitter retries", action_id, exc)
        return
    _settle(db, collateral, action_id, signed.tx_hash, wait_s)


def _settle(db: Database, collateral: CollateralClient, action_id: str, tx_hash: str, timeout: float) -> bool:
    """Record the outcome of ``tx_hash`` if it is mined (within ``timeout``); ``False`` if not yet."""
    with db.session() as session:
        primary = session.get(Action, action_id).primary_type
    try:
        mined = collateral.outcome(primary, tx_hash, timeout=timeout)
    except ChainRevert as exc:
        _fail(db, action_id, exc, tx_hash=tx_hash)
        return True
    except ChainError as exc:
        log.warning("action %s: cannot read transaction %s yet: %s", action_id, tx_hash, exc)
        return False
    if mined is None:
        return False
    with db.session() as session:
        done = session.execute(
            update(Action).where(Action.id == action_id, Action.status == "submitted", Action.tx_hash == tx_hash)
            .values(status="confirmed", block_number=mined.block_number, gas_used=mined.gas_used, confirmed_at=naive_utc(_now()))
            .execution_options(synchronize_session=False)
        )  # fmt: skip
        if done.rowcount == 1:
            action = session.get(Action, action_id)
            session.refresh(action)
            _apply(session, collateral, action)
            log.info("action %s (%s) confirmed in block %d", action_id, primary, mined.block_number)
    return True


def _apply(session: Any, collateral: CollateralClient, action: Action) -> None:
    """What a mined action changes off chain: the lot's cache and documents, or the organisation's chain id."""
    if action.type == "register_organisation":
        org_chain.apply_registration(session, collateral, action)
    else:
        lots.apply_confirmed(session, collateral, action)


def _fail(db: Database, action_id: str, exc: ChainRevert, *, claim: datetime | None = None, tx_hash: str | None = None) -> None:
    with db.session() as session:
        condition = [Action.id == action_id, Action.status == "submitted"]
        condition.append(Action.submitted_at == claim if claim is not None else Action.tx_hash == tx_hash)
        session.execute(
            update(Action).where(*condition)
            .values(status="failed", tx_hash=exc.tx_hash or tx_hash, error_code=exc.error or "reverted", error_message=str(exc))
            .execution_options(synchronize_session=False)
        )  # fmt: skip
    log.info("action %s refused by the contract: %s", action_id, exc)


def reconcile(db: Database, collateral: CollateralClient, *, lease: timedelta = CLAIM_LEASE, now: datetime | None = None) -> int:
    """One pass over unfinished actions (see the module doc); returns how many it moved on."""
    now = now or _now()
    moved = 0
    with db.session() as session:
        expired = session.execute(
            update(Action).where(Action.status == "collecting", Action.deadline <= naive_utc(now))
            .values(status="expired").execution_options(synchronize_session=False)
        ).rowcount  # fmt: skip
        moved += expired
        collecting = [a.id for a in session.scalars(select(Action).where(Action.status == "collecting")) if is_complete(a)]
        submitted = session.execute(
            select(Action.id, Action.tx_hash, Action.raw_tx, Action.submitted_at).where(Action.status == "submitted")
        ).all()
    for action_id in collecting:  # every signature in, then the process died before claiming it
        submit_complete(db, collateral, action_id, wait_s=0)
        moved += 1
    for action_id, tx_hash, raw_tx, claimed in submitted:
        if tx_hash is None:
            if claimed is None or utc(claimed) + lease <= now:  # claimed, never recorded: never sent
                resend = _claim(db, action_id, "submitted", claimed)
                if resend is not None:
                    _send(db, collateral, action_id, resend, 0)
                    moved += 1
            continue
        moved += _reconcile_sent(db, collateral, action_id, tx_hash, raw_tx, claimed)
    return moved


def _reconcile_sent(db: Database, collateral: CollateralClient, action_id: str, tx_hash: str, raw_tx: bytes | None, claimed: datetime) -> int:
    chain = collateral.chain
    try:
        state = chain.transaction_status(tx_hash)
        if state == "mined":
            return int(_settle(db, collateral, action_id, tx_hash, 0))
        if state == "pending":
            return 0
        if raw_tx is not None and chain.rebroadcast(raw_tx):  # unknown: recorded, then the process died
            log.info("action %s: transaction %s sent again", action_id, tx_hash)
            return 1
    except NonceConsumed:
        if chain.transaction_status(tx_hash) == "mined":  # mined meanwhile: it was this very transaction
            return int(_settle(db, collateral, action_id, tx_hash, 0))
    except ChainError as exc:
        log.warning("action %s: cannot reconcile transaction %s: %s", action_id, tx_hash, exc)
        return 0
    # can never be mined (nonce taken, fees refused, nothing recorded to resend): sign it anew
    resend = _claim(db, action_id, "submitted", claimed)
    if resend is None:
        return 0
    log.info("action %s: transaction %s can never be mined; sending the action anew", action_id, tx_hash)
    _send(db, collateral, action_id, resend, 0)
    return 1


class Submitter:
    """Runs :func:`reconcile` in the background (one instance at a time: a lease, like anchoring)."""

    def __init__(self, db: Database, collateral: CollateralClient, *, poll_s: float = 2.0, leadership: Leadership | None = None) -> None:
        self.db = db
        self.collateral = collateral
        self.poll_s = poll_s
        self.leadership = leadership
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="actions", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self.leadership is None or self.leadership.acquire():
                    reconcile(self.db, self.collateral)
            except Exception as exc:  # keep going whatever one pass hit
                log_failed_round(log, "reconciling actions", exc)
            self._stop.wait(self.poll_s)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self.leadership is not None:
            self.leadership.release()
