"""Supervision alerts, scoped by party; rule thresholds for warehouses; the insurer's events."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query

from api.deps import CurrentOrg, LedgerDep, Operator, require_role
from api.schemas import AlertPublic, InsurerEvent, RulesView
from ledger.store.models import Organisation
from ledger.supervision import RULES, RulesConfig

router = APIRouter(prefix="/v1", tags=["alerts"])

Insurer = Annotated[Organisation, Depends(require_role("insurer"))]
Status = Literal["open", "cleared"]
RuleQuery = Literal[tuple(RULES)]  # type: ignore[valid-type]
Limit = Annotated[int, Query(ge=1, le=500, description="at most this many, newest first")]
Since = Annotated[str | None, Query(description="RFC 3339: only alerts raised at or after this time")]


@router.get("/alerts", response_model=list[AlertPublic], summary="Alerts on the lots you are a party of")
def list_alerts(org: CurrentOrg, ledger: LedgerDep, lot: str | None = None, status: Status | None = None,
                rule: RuleQuery | None = None, since: Since = None, limit: Limit = 100) -> list[dict]:
    """A warehouse sees its lots' alerts, a bank those of lots pledged to it, an enterprise its own, an
    insurer those it insures; auditors see all. Each alert carries its evidence readings with a link to
    each one's proof bundle, and its freeze on chain."""
    return ledger.supervision.alerts(org, lot=lot, status=status, rule=rule, since=since, limit=limit)


@router.get("/alerts/{alert_id}", response_model=AlertPublic, summary="One alert")
def get_alert(alert_id: str, org: CurrentOrg, ledger: LedgerDep) -> dict:
    return ledger.supervision.alert(org, alert_id)


@router.post("/alerts/{alert_id}/acknowledge", response_model=AlertPublic, summary="Clear an alert that froze nothing")
def acknowledge(alert_id: str, org: CurrentOrg, ledger: LedgerDep) -> dict:
    """For the lot's bank or warehouse (or its insurer, for fire, water and temperature): a warning, or
    an alert on a lot that was not pledged. An alert that froze the lot answers 409
    `unfreeze_required`: it clears only when bank and warehouse together unfreeze the lot on chain."""
    return ledger.supervision.acknowledge(org, alert_id)


@router.get("/lots/{lot_id}/alerts", response_model=list[AlertPublic], summary="A lot's alerts")
def lot_alerts(lot_id: str, org: CurrentOrg, ledger: LedgerDep, status: Status | None = None, rule: RuleQuery | None = None,
               limit: Limit = 100) -> list[dict]:
    """404 `lot_not_found` for a lot you are not a party of."""
    return ledger.supervision.alerts(org, lot=lot_id, status=status, rule=rule, limit=limit)


@router.get("/rules", response_model=RulesView, summary="Your warehouse's rule thresholds (operators)")
def get_rules(org: Operator, ledger: LedgerDep) -> dict:
    return ledger.supervision.rules(org)


@router.put("/rules", response_model=RulesView, summary="Set your warehouse's rule thresholds (operators)")
def put_rules(body: RulesConfig, org: Operator, ledger: LedgerDep) -> dict:
    """Replaces your overrides with the fields sent (`{}` restores every default); lots' own overrides stay."""
    return ledger.supervision.set_rules(org, body.model_dump(mode="json", exclude_unset=True))


@router.get("/lots/{lot_id}/rules", response_model=RulesView, summary="The rule thresholds in force for a lot")
def get_lot_rules(lot_id: str, org: CurrentOrg, ledger: LedgerDep) -> dict:
    return ledger.supervision.rules(org, lot_id)


@router.put("/lots/{lot_id}/rules", response_model=RulesView, summary="Override thresholds for one lot (its warehouse)")
def put_lot_rules(lot_id: str, body: RulesConfig, org: Operator, ledger: LedgerDep) -> dict:
    """E.g. the lot's `geofence` or `rfid_expected_count`; the fields not sent follow the warehouse's."""
    return ledger.supervision.set_rules(org, body.model_dump(mode="json", exclude_unset=True), lot_id)


@router.get("/insurer/events", response_model=list[InsurerEvent], summary="Fire, water and temperature events of the lots you insure")
def insurer_events(org: Insurer, ledger: LedgerDep, lot: str | None = None, status: Status | None = None, since: Since = None,
                   limit: Limit = 100) -> list[dict]:
    """Every smoke alarm (`fire`), water alarm (`water`) and out-of-range temperature (`temperature`) on
    a lot whose insurer you are, newest first, with the signed readings and their proof links."""
    return ledger.supervision.insurer_events(org, lot=lot, status=status, since=since, limit=limit)
