"""What the API shows of supervision: alerts scoped by party, the insurer's events, rule thresholds.

A party sees the alerts of the lots it may see (:func:`ledger.lots.lot_scope`): a warehouse
operator its warehouse's lots, a bank the lots pledged to it, an enterprise its own, an insurer
those it insures; auditors see all. A lot it may not see answers 404, as if it did not exist.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ledger import webhooks
from ledger.lots import lot_scope, visible_lot
from ledger.errors import Conflict, Forbidden, Invalid, NotFound
from ledger.store.models import Action, Alert, Lot, Organisation, Reading, naive_utc, utc
from ledger.supervision import config
from ledger.supervision.loop import alert_event, recipients
from ledger.supervision.rules import RULES, Row, to_row, row_select

__all__ = ["INSURER_RULES", "acknowledge", "get_alert", "insurer_events", "list_alerts", "lot_rules", "set_lot_rules",
           "set_warehouse_rules", "warehouse_rules"]  # fmt: skip

#: The rules an insurer is told of, and the event each is.
INSURER_RULES = {"smoke_alarm": "fire", "water_alarm": "water", "temperature": "temperature"}
MAX_LIMIT = 500


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else utc(moment).isoformat().replace("+00:00", "Z")


def _scoped(query: Any, org: Organisation) -> Any:
    return query.where(lot_scope(org))


def _readings(session: Session, ids: set[str]) -> dict[str, dict[str, Any]]:
    rows = session.execute(row_select(every_kind=True).add_columns(Reading.batch_index).where(Reading.id.in_(ids))).all() if ids else []
    views = {}
    for r in rows:
        row: Row = to_row(r)
        views[row.id] = {
            "id": row.id, "device": row.device_id, "kind": row.kind, "lot": row.lot, "ts": _iso(row.ts),
            "received_at": _iso(row.received_at), "data": row.data, "batch": r.batch_index,
            "proof": f"/v1/readings/{row.id}/proof",
        }  # fmt: skip
    return views


def _views(session: Session, alerts: list[Alert]) -> list[dict[str, Any]]:
    """Alerts with their readings (and proof links) and their freeze, in as few queries as possible."""
    readings = _readings(session, {i for a in alerts for i in json.loads(a.readings)})
    action_ids = [a.freeze_action_id for a in alerts if a.freeze_action_id]
    frozen = {a.id: a for a in session.scalars(select(Action).where(Action.id.in_(action_ids)))} if action_ids else {}
    views = []
    for alert in alerts:
        view = alert_event(alert)
        view["raised_at"], view["cleared_at"] = _iso(alert.raised_at), _iso(alert.cleared_at)
        view["cleared_by"] = alert.cleared_by
        view["readings"] = [readings.get(i, {"id": i, "proof": f"/v1/readings/{i}/proof"}) for i in json.loads(alert.readings)]
        action = frozen.get(alert.freeze_action_id or "")
        view["freeze"] = None if alert.freeze_status is None else {
            "status": alert.freeze_status, "action": alert.freeze_action_id,
            "tx_hash": action.tx_hash if action else None, "block_number": action.block_number if action else None,
        }  # fmt: skip
        views.append(view)
    return views


def _since(since: str | None) -> datetime | None:
    if since is None:
        return None
    try:
        return naive_utc(datetime.fromisoformat(since.replace("Z", "+00:00")))
    except ValueError:
        raise Invalid("since must be an RFC 3339 time, e.g. 2026-11-21T08:00:00Z", code="invalid_since") from None


def list_alerts(session: Session, org: Organisation, *, lot: str | None = None, status: str | None = None,
                rule: str | None = None, since: str | None = None, limit: int = 100, rules: list[str] | None = None) -> list[dict[str, Any]]:
    """Alerts of the lots ``org`` is a party of, newest first."""
    if rule is not None and rule not in RULES:
        raise Invalid(f"rule must be one of {', '.join(RULES)}", code="invalid_rule")
    query = _scoped(select(Alert).join(Lot, Lot.id == Alert.lot_id), org)
    if lot is not None:
        visible_lot(session, org, lot)
        query = query.where(Alert.lot_id == lot)
    if status is not None:
        query = query.where(Alert.status == status)
    if rule is not None:
        query = query.where(Alert.rule == rule)
    if rules is not None:
        query = query.where(Alert.rule.in_(rules))
    if (moment := _since(since)) is not None:
        query = query.where(Alert.raised_at >= moment)
    alerts = session.scalars(query.order_by(Alert.raised_at.desc(), Alert.id).limit(max(1, min(limit, MAX_LIMIT)))).all()
    return _views(session, list(alerts))


def get_alert(session: Session, org: Organisation, alert_id: str) -> dict[str, Any]:
    alert = session.scalar(_scoped(select(Alert).join(Lot, Lot.id == Alert.lot_id).where(Alert.id == alert_id), org))
    if alert is None:
        raise NotFound(f"no alert {alert_id} on a lot you are a party of", code="alert_not_found")
    return _views(session, [alert])[0]


def acknowledge(session: Session, org: Organisation, alert_id: str, now: datetime) -> dict[str, Any]:
    """Clear an alert that froze nothing (a warning, or a critical alert on a lot that was not pledged), by
    the lot's bank or warehouse (or its insurer, for fire, water and temperature)."""
    alert = session.scalar(_scoped(select(Alert).join(Lot, Lot.id == Alert.lot_id).where(Alert.id == alert_id), org))
    if alert is None:
        raise NotFound(f"no alert {alert_id} on a lot you are a party of", code="alert_not_found")
    lot = session.get(Lot, alert.lot_id)
    assert lot is not None
    if org.id not in recipients(lot, alert.rule):
        raise Forbidden("only the lot's bank or warehouse (or its insurer, for fire, water and temperature) acknowledge its alerts",
                        code="role_forbidden")
    if alert.status != "open":
        raise Conflict(f"alert {alert.id} is {alert.status} already", code="alert_not_open")
    if alert.freeze_status in ("pending", "confirmed", "already_frozen"):
        raise Conflict(
            f"alert {alert.id} froze lot {lot.id} (or is freezing it): it clears when bank and warehouse together unfreeze the "
            f'lot on chain (POST /v1/lots/{lot.id}/actions with {{"type": "unfreeze"}}, signed by both)',
            code="unfreeze_required",
        )
    alert.status, alert.cleared_at, alert.cleared_by = "cleared", now, org.id
    webhooks.enqueue(session, "alert.cleared", {"alert": alert_event(alert), "lot": lot.id, "acknowledged_by": org.id},
                     organisations=recipients(lot, alert.rule))  # fmt: skip
    session.flush()
    return _views(session, [alert])[0]


def insurer_events(session: Session, org: Organisation, *, lot: str | None = None, since: str | None = None,
                   status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """Fire, water and temperature alerts of the lots ``org`` insures, with their readings and proof links."""
    if org.role != "insurer":
        raise Forbidden(f"this needs an insurer's key; yours is {org.role}'s", code="role_forbidden")
    events = list_alerts(session, org, lot=lot, since=since, status=status, limit=limit, rules=list(INSURER_RULES))
    return [{"event": INSURER_RULES[e["rule"]], **e} for e in events]


# -- rule thresholds ------------------------------------------------------------------------------


def _warehouse(org: Organisation) -> str:
    if org.role != "operator":
        raise Forbidden(f"rule thresholds are set by a warehouse operator; yours is {org.role}'s key", code="role_forbidden")
    return org.id


def warehouse_rules(session: Session, org: Organisation) -> dict[str, Any]:
    return config.rules_view(session, _warehouse(org))


def set_warehouse_rules(session: Session, org: Organisation, overrides: dict[str, Any]) -> dict[str, Any]:
    return config.set_rules(session, _warehouse(org), overrides)


def lot_rules(session: Session, org: Organisation, lot_id: str) -> dict[str, Any]:
    lot = visible_lot(session, org, lot_id)
    return config.rules_view(session, lot.warehouse_id, lot)


def set_lot_rules(session: Session, org: Organisation, lot_id: str, overrides: dict[str, Any]) -> dict[str, Any]:
    lot = visible_lot(session, org, lot_id)
    if lot.warehouse_id != org.id:
        raise Forbidden(f"only lot {lot.id}'s warehouse sets its rule thresholds", code="role_forbidden")
    return config.set_rules(session, lot.warehouse_id, overrides, lot)
