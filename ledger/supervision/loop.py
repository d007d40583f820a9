"""The supervision loop: follows new readings, raises alerts, freezes lots, notices unfreezes.

It runs beside ingestion, never inside it (ingestion stays as fast as it is), and reads the
readings table by ``Reading.pk`` from a cursor (:class:`~ledger.store.models.SupervisionCursor`)
that is committed **in the same transaction as the alerts the readings raised**, so a crash
re-evaluates nothing twice and misses nothing. A reading whose transaction commits after a
higher ``pk`` became visible (two ingest requests in flight on PostgreSQL) leaves a hole below the
cursor; holes are looked at again on every pass until their readings appear, and forgotten only
after ``hole_grace_s`` (their transaction must have rolled back).

Each pass (``poll_s``, well inside one anchoring interval):

1. **evaluate**: the new readings through the rules (:mod:`ledger.supervision.rules`); each finding
   not already open for its lot (and device) becomes an :class:`~ledger.store.models.Alert`, and
   ``alert.raised`` is queued for the lot's bank and warehouse (and insurer, for fire, water and
   temperature) in the same transaction.
2. **freeze**: every critical alert whose freeze is pending freezes its lot on chain through the
   supervision key (a ``Freeze`` action, ``reason`` = :func:`attestation.documents.evidence_reason`
   of the alert's readings, signed and committed first, then sent crash-safely by
   :mod:`ledger.submission` with no database transaction open), then ``lot.frozen`` is queued. A
   crash anywhere leaves the signed action on the alert, which is finished, never signed twice; a
   lot found frozen already is recorded as such.
3. every ``sweep_s``, **sweep**: devices silent beyond their heartbeat interval, look-ahead checks
   whose window has passed, and lots frozen by an alert that the chain now shows unfrozen (bank
   and warehouse signed an ``Unfreeze``): their alerts are cleared (``alert.cleared``,
   ``lot.unfrozen``).

With a :class:`~ledger.leadership.Leadership` lease only one instance supervises at a time.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from eth_account.signers.local import LocalAccount
from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from attestation.documents import evidence_reason
from ledger import actions, submission, webhooks
from ledger.chain.base import ChainError
from ledger.chain.collateral import CollateralClient, Status, sign_typed_data
from ledger.errors import LedgerError
from ledger.leadership import Leadership
from ledger.metrics import ALERTS
from ledger.store.db import Database, log_failed_round
from ledger.store.models import Action, Alert, DeviceGap, Lot, Reading, SupervisionCheck, SupervisionCursor, naive_utc, utc
from ledger.supervision.config import configs_for
from ledger.supervision.rules import RULES, Context, Finding, evaluate, evaluate_check, row_select, silent_devices, to_row

__all__ = ["PassResult", "Supervisor", "alert_event"]

log = logging.getLogger(__name__)

CURSOR = "readings"
#: Readings evaluated per transaction.
PAGE = 2000
#: A signed freeze not sent this long before its deadline is signed again rather than sent.
FRESH = timedelta(minutes=5)


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat() + "Z"


def alert_event(alert: Alert) -> dict[str, Any]:
    """The ``alert`` object of the ``alert.raised`` / ``alert.cleared`` webhook bodies."""
    return {
        "id": alert.id, "lot": alert.lot_id, "device": alert.device_id, "rule": alert.rule, "severity": alert.severity,
        "status": alert.status, "readings": json.loads(alert.readings), "reason": alert.reason,
        "detail": json.loads(alert.detail), "raised_at": _iso(alert.raised_at), "cleared_at": _iso(alert.cleared_at),
    }  # fmt: skip


def recipients(lot: Lot, rule: str) -> list[str]:
    """Who hears of an alert: the lot's bank and warehouse, and its insurer for fire, water and temperature."""
    parties = [lot.bank_id, lot.warehouse_id] + ([lot.insurer_id] if RULES[rule].insurer else [])
    return [p for p in dict.fromkeys(parties) if p]


@dataclass
class PassResult:
    raised: list[str] = field(default_factory=list)  # alert ids
    frozen: list[str] = field(default_factory=list)  # lot ids
    cleared: list[str] = field(default_factory=list)  # alert ids
    readings: int = 0


class Supervisor:
    """The loop of the module doc. ``tick`` runs one pass (tests call it, or its parts, directly)."""

    def __init__(
        self,
        db: Database,
        collateral: Callable[[], CollateralClient],
        supervisor: Callable[[], LocalAccount],
        *,
        poll_s: float = 0.5,
        sweep_s: float = 5.0,
        hole_grace_s: float = 120.0,
        leadership: Leadership | None = None,
        notify: Callable[[], None] | None = None,
        clock: Callable[[], datetime] = _utcnow,
        freeze_wait_s: float = 1.0,
    ) -> None:
        """``collateral`` and ``supervisor`` give the CollateralRegistry client and the supervision key
        when first needed; ``notify`` is called after webhooks were queued (the dispatcher's ``wake``)."""
        self.db = db
        self._collateral_factory = collateral
        self._collateral: CollateralClient | None = None
        self._account_factory = supervisor
        self.poll_s = poll_s
        self.sweep_s = sweep_s
        self.hole_grace_s = hole_grace_s
        self.leadership = leadership
        self.notify = notify or (lambda: None)
        self.clock = clock
        self.freeze_wait_s = freeze_wait_s  # how long one pass waits for a freeze to be mined (the next looks again)
        self.last_error: str | None = None
        self._baselines: dict[Any, Any] = {}
        self._last_sweep = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def collateral(self) -> CollateralClient:
        if self._collateral is None:
            self._collateral = self._collateral_factory()
        return self._collateral

    def _now(self) -> datetime:
        return naive_utc(self.clock())

    def _context(self, session: Session) -> Context:
        if len(self._baselines) > 10_000:
            self._baselines.clear()
        return Context(session, self._now(), lambda lots: configs_for(session, lots), self._baselines)

    # -- one pass ---------------------------------------------------------------------------------

    def tick(self, *, sweep: bool | None = None) -> PassResult:
        """Evaluate new readings, freeze, and (every ``sweep_s``, or if ``sweep``) sweep."""
        result = PassResult()
        while True:
            raised, count = self.evaluate()
            result.raised += raised
            result.readings += count
            if count < PAGE:
                break
        now = self.clock().timestamp()
        sweeping = sweep if sweep is not None else now - self._last_sweep >= self.sweep_s
        if sweeping:
            self._last_sweep = now
            result.raised += self.sweep()
        result.frozen += self.freeze_pending()
        if sweeping:
            result.cleared += self.follow_unfreezes()
        return result

    def evaluate(self) -> tuple[list[str], int]:
        """Run the rules over the readings after the cursor (and in its holes); commit the alerts with
        the cursor. Returns the alerts raised and the readings read."""
        raised: list[Alert] = []
        with self.db.session() as session:
            cursor = session.get(SupervisionCursor, CURSOR, with_for_update=True)
            if cursor is None:
                cursor = SupervisionCursor(name=CURSOR, position=0, holes="[]")
                session.add(cursor)
                session.flush()
            holes = json.loads(cursor.holes)
            wanted = or_(Reading.pk > cursor.position, *(Reading.pk.between(lo, hi) for lo, hi, _ in holes))
            # the page's pks first (every one moves the cursor), then the rows of those in a lot,
            # the only ones a rule reads: readings of no lot cost one narrow row each
            page = select(Reading.pk, Reading.lot, Reading.device_id).where(wanted).order_by(Reading.pk).limit(PAGE)
            seen = session.connection().execute(page).all()
            now = self._now()
            if seen:
                ctx = self._context(session)
                ctx.preload_lots({lot for _, lot, _ in seen if lot is not None})
                in_lots = [pk for pk, lot, device in seen if ctx.lot_for(lot, device) is not None]
                found = session.connection().execute(row_select().where(Reading.pk.in_(in_lots)).order_by(Reading.pk)) if in_lots else []
                rows = [to_row(r) for r in found]
                gaps = self._gaps(session, rows)
                for row in rows:
                    for finding in evaluate(ctx, row, gaps.get(row.id)):
                        alert = self._raise(session, ctx, finding)
                        if alert is not None:
                            raised.append(alert)
                session.add_all(ctx.checks)
            pks = {pk for pk, _, _ in seen}
            position = max([cursor.position, *pks])
            cursor.holes = json.dumps(_holes(holes, cursor.position, position, pks, now.timestamp(), self.hole_grace_s))
            cursor.position = position
        self._raised(raised)
        return [a.id for a in raised], len(seen)

    def sweep(self) -> list[str]:
        """Silent devices and look-ahead checks whose window has passed."""
        raised: list[Alert] = []
        with self.db.session() as session:
            ctx = self._context(session)
            findings = silent_devices(ctx)
            due = session.scalars(select(SupervisionCheck).where(SupervisionCheck.due_at <= ctx.now).order_by(SupervisionCheck.id)).all()
            for check in due:
                findings += evaluate_check(ctx, check)
            if due:
                session.execute(delete(SupervisionCheck).where(SupervisionCheck.id.in_([c.id for c in due])))
            for finding in findings:
                alert = self._raise(session, ctx, finding)
                if alert is not None:
                    raised.append(alert)
        self._raised(raised)
        return [a.id for a in raised]

    def freeze_pending(self) -> list[str]:
        """Freeze the lot of every critical alert whose freeze is pending; returns the lots frozen."""
        frozen = []
        with self.db.session() as session:
            pending = session.execute(
                select(Alert.id, Alert.lot_id).where(Alert.freeze_status == "pending").order_by(Alert.raised_at)
            ).all()
        for alert_id, lot_id in pending:
            try:
                if self._freeze(alert_id):
                    frozen.append(lot_id)
            except ChainError as exc:  # the node is down: the freeze stays pending and is tried again
                self.last_error = f"freezing lot {lot_id}: {exc}"
                log.error("could not freeze lot %s for alert %s (retrying): %s", lot_id, alert_id, exc)
                break
            except LedgerError as exc:  # the chain would not take it at all (e.g. no supervision role): not retried
                with self.db.session() as session:
                    session.get(Alert, alert_id).freeze_status = "failed"  # type: ignore[union-attr]
                self.last_error = f"freezing lot {lot_id}: {exc.message}"
                log.error("cannot freeze lot %s for alert %s: %s", lot_id, alert_id, exc.message)
        if frozen:
            self.notify()
        return frozen

    def _freeze(self, alert_id: str) -> bool:
        """Freeze the alert's lot; ``True`` once the freeze is mined. The ``Freeze`` action is proposed,
        signed by the supervision key and committed, then sent by :func:`ledger.submission.submit_complete`
        (claimed, written ahead, no database transaction open while the chain is asked). A crash anywhere
        leaves the signed action on the alert: the next pass (or the submitter) finishes that same action."""
        with self.db.session() as session:
            alert = session.get(Alert, alert_id, with_for_update=True)
            if alert is None or alert.freeze_status != "pending":
                return False
            action = session.get(Action, alert.freeze_action_id) if alert.freeze_action_id else None
            stale = action is not None and action.status == "collecting" and utc(action.deadline) < self.clock() + FRESH
            if action is None or action.status == "expired" or stale:
                lot = session.get(Lot, alert.lot_id)
                assert lot is not None
                if lot.status == "frozen":
                    alert.freeze_status = "already_frozen"
                    return False
                if lot.status not in ("pledged", "margin_call"):
                    alert.freeze_status = "not_freezable"
                    return False
                account = self._account_factory()
                action = actions.create_action(
                    session, self.collateral, lot=lot, type="freeze", primary_type="Freeze",
                    fields={"lot": bytes.fromhex(lot.chain_lot[2:]), "reason": bytes.fromhex(alert.reason[2:])},
                    deadline=self.clock() + actions.SYSTEM_DEADLINE, proposed_by=None, approver=account.address,
                    params={"alert": alert.id, "rule": alert.rule, "reason": alert.reason, "readings": json.loads(alert.readings)},
                )  # fmt: skip
                actions.add_signature(session, action, sign_typed_data(account.key, json.loads(action.typed_data)))
                alert.freeze_action_id = action.id
            action_id, status = action.id, action.status
        if status == "collecting":
            submission.submit_complete(self.db, self.collateral, action_id, wait_s=self.freeze_wait_s)
        submission.await_outcome(self.db, self.collateral, action_id, wait_s=self.freeze_wait_s)  # sent by the submitter
        return self._frozen(alert_id)

    def _frozen(self, alert_id: str) -> bool:
        """Record the outcome of the alert's freeze once its action has one."""
        with self.db.session() as session:
            alert = session.get(Alert, alert_id)
            action = session.get(Action, alert.freeze_action_id or "") if alert is not None else None
            if alert is None or action is None or action.status not in ("confirmed", "failed"):
                return False  # still on its way: the next pass looks again
            lot = session.get(Lot, alert.lot_id)
            assert lot is not None
            if action.status == "failed":
                actions.refresh_lot(session, self.collateral, lot)
                alert.freeze_status = "already_frozen" if lot.status == "frozen" else "failed"
                log.warning("freeze of lot %s for alert %s %s: %s", lot.id, alert.id, alert.freeze_status, action.error_message)
                return False
            alert.freeze_status = "confirmed"
            webhooks.enqueue(session, "lot.frozen", {
                "lot": lot.id, "alert": alert.id, "rule": alert.rule, "reason": alert.reason, "readings": json.loads(alert.readings),
                "action": action.id, "tx_hash": action.tx_hash, "block_number": action.block_number,
            }, organisations=recipients(lot, alert.rule))  # fmt: skip
            log.warning("lot %s frozen on chain for alert %s (%s): tx %s", lot.id, alert.id, alert.rule, action.tx_hash)
            return True

    def follow_unfreezes(self) -> list[str]:
        """Clear the open alerts of every lot an alert froze that the chain now shows unfrozen."""
        with self.db.session() as session:
            lots = session.scalars(
                select(Lot).where(Lot.id.in_(
                    select(Alert.lot_id).where(Alert.status == "open", Alert.freeze_status.in_(["confirmed", "already_frozen"]))
                ))
            ).all()  # fmt: skip
        cleared: list[str] = []
        for lot in lots:
            if self.collateral.lot(bytes.fromhex(lot.chain_lot[2:])).status == Status.FROZEN:
                continue
            cleared += self._clear_lot(lot.id)
        if cleared:
            self.notify()
        return cleared

    def _clear_lot(self, lot_id: str) -> list[str]:
        with self.db.session() as session:
            lot = session.get(Lot, lot_id)
            assert lot is not None
            actions.refresh_lot(session, self.collateral, lot)
            if lot.status == "frozen":
                return []
            unfreeze = session.scalar(
                select(Action).where(Action.lot_id == lot.id, Action.primary_type == "Unfreeze", Action.status == "confirmed")
                .order_by(Action.confirmed_at.desc()).limit(1)
            )  # fmt: skip
            open_alerts = session.scalars(select(Alert).where(Alert.lot_id == lot.id, Alert.status == "open").order_by(Alert.raised_at)).all()
            now = self._now()
            rules = set()
            for alert in open_alerts:
                alert.status, alert.cleared_at, alert.cleared_by = "cleared", now, "unfreeze"
                rules.add(alert.rule)
                webhooks.enqueue(session, "alert.cleared", {"alert": alert_event(alert), "lot": lot.id,
                                                            "unfreeze_action": unfreeze.id if unfreeze else None},
                                 organisations=recipients(lot, alert.rule))  # fmt: skip
            parties = sorted({p for rule in rules for p in recipients(lot, rule)})
            webhooks.enqueue(session, "lot.unfrozen", {
                "lot": lot.id, "status": lot.status, "alerts": [a.id for a in open_alerts],
                "action": unfreeze.id if unfreeze else None, "tx_hash": unfreeze.tx_hash if unfreeze else None,
            }, organisations=parties)  # fmt: skip
            log.info("lot %s unfrozen on chain: %d alert(s) cleared", lot.id, len(open_alerts))
            return [a.id for a in open_alerts]

    # -- helpers ----------------------------------------------------------------------------------

    @staticmethod
    def _gaps(session: Session, rows: list[Any]) -> dict[str, DeviceGap]:
        if not rows:
            return {}
        found = session.scalars(select(DeviceGap).where(
            DeviceGap.device_id.in_({r.device_id for r in rows}), DeviceGap.reading_id.in_([r.id for r in rows])
        ))  # fmt: skip
        return {g.reading_id: g for g in found}

    def _raise(self, session: Session, ctx: Context, finding: Finding) -> Alert | None:
        """The finding as a new alert, unless one is open for its lot and rule (and device)."""
        rule = RULES[finding.rule]
        same = select(Alert.id).where(Alert.lot_id == finding.lot_id, Alert.rule == finding.rule, Alert.status == "open")
        if rule.scope == "device":
            same = same.where(Alert.device_id == finding.device_id)
        if session.scalar(same.limit(1)) is not None:
            return None
        lot = ctx.lot(finding.lot_id)
        assert lot is not None
        alert = Alert(
            lot_id=lot.id, device_id=finding.device_id, rule=finding.rule, severity=rule.severity, status="open",
            readings=json.dumps(finding.readings), reason="0x" + evidence_reason(finding.readings).hex(),
            detail=json.dumps(finding.detail, sort_keys=True), trigger_pk=finding.trigger_pk, raised_at=ctx.now,
            freeze_status="pending" if rule.severity == "critical" else None,
        )  # fmt: skip
        session.add(alert)
        session.flush()
        webhooks.enqueue(session, "alert.raised", {"alert": alert_event(alert), "lot": lot.id}, organisations=recipients(lot, rule.name))
        log.warning("alert %s on lot %s: %s (%s), evidence %s", alert.id, lot.id, rule.name, rule.severity, finding.readings)
        return alert

    def _raised(self, alerts: list[Alert]) -> None:
        for alert in alerts:
            ALERTS.labels(rule=alert.rule, severity=alert.severity).inc()
        if alerts:
            self.notify()

    # -- the background loop ----------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="supervision", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        backoff = self.poll_s
        while not self._stop.wait(self.poll_s if self.last_error is None else backoff):
            try:
                if self.leadership is not None and not self.leadership.acquire():
                    continue
                self.last_error = None
                self.tick()
                if self.last_error is None:
                    backoff = self.poll_s
            except (ChainError, OSError) as exc:
                self.last_error = str(exc)
                backoff = min(max(backoff, self.poll_s) * 2, 30.0)
                log.error("supervision pass failed (retrying in %.1f s): %s", backoff, exc)
            except Exception as exc:  # never let the loop die silently
                backoff = min(max(backoff, self.poll_s) * 2, 30.0)
                self.last_error = log_failed_round(log, "supervision pass", exc)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self.leadership is not None:
            self.leadership.release()


def _holes(holes: list[list[float]], position: int, new_position: int, found: set[int], now: float, grace_s: float) -> list[list[float]]:
    """The pk ranges still missing: old holes less what was found, plus the gaps between ``position``
    and ``new_position`` that nothing filled; ranges older than ``grace_s`` are forgotten."""
    ranges = [(int(lo), int(hi), since) for lo, hi, since in holes if now - since < grace_s]
    if new_position > position:
        ranges.append((position + 1, new_position, now))
    left: list[list[float]] = []
    ordered = sorted(found)
    for lo, hi, since in ranges:
        start = lo
        for pk in (p for p in ordered if lo <= p <= hi):
            if pk > start:
                left.append([start, pk - 1, since])
            start = pk + 1
        if start <= hi:
            left.append([start, hi, since])
    return left
