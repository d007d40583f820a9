"""Supervision: rules over incoming readings, alerts that freeze collateral on chain, the insurer view.

- :mod:`ledger.supervision.rules`  what raises an alert, on which evidence (the rules table)
- :mod:`ledger.supervision.config` thresholds per warehouse, overridden per lot
- :mod:`ledger.supervision.loop`   the loop: cursor over new readings, alerts, freezes, unfreezes
- :mod:`ledger.supervision.views`  alerts scoped by party, the insurer's events, thresholds (the API's)
- :mod:`ledger.supervision.geo`    distances and geofences

:class:`Supervision` is what :class:`ledger.service.Ledger` hands the API.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from ledger.store.db import Database
from ledger.store.models import Organisation, naive_utc
from ledger.supervision import views
from ledger.supervision.config import RulesConfig
from ledger.supervision.loop import Supervisor
from ledger.supervision.rules import RULES

__all__ = ["RULES", "RulesConfig", "Supervision", "Supervisor"]


class Supervision:
    """The API's use cases of supervision, each in one transaction."""

    def __init__(self, db: Database, *, notify: Callable[[], None] | None = None) -> None:
        self.db = db
        self.notify = notify or (lambda: None)

    def alerts(self, org: Organisation, **filters: Any) -> list[dict[str, Any]]:
        with self.db.session() as session:
            return views.list_alerts(session, org, **filters)

    def alert(self, org: Organisation, alert_id: str) -> dict[str, Any]:
        with self.db.session() as session:
            return views.get_alert(session, org, alert_id)

    def acknowledge(self, org: Organisation, alert_id: str) -> dict[str, Any]:
        with self.db.session() as session:
            view = views.acknowledge(session, org, alert_id, naive_utc(datetime.now(timezone.utc)))
        self.notify()
        return view

    def insurer_events(self, org: Organisation, **filters: Any) -> list[dict[str, Any]]:
        with self.db.session() as session:
            return views.insurer_events(session, org, **filters)

    def rules(self, org: Organisation, lot_id: str | None = None) -> dict[str, Any]:
        with self.db.session() as session:
            return views.warehouse_rules(session, org) if lot_id is None else views.lot_rules(session, org, lot_id)

    def set_rules(self, org: Organisation, overrides: dict[str, Any], lot_id: str | None = None) -> dict[str, Any]:
        with self.db.session() as session:
            if lot_id is None:
                return views.set_warehouse_rules(session, org, overrides)
            return views.set_lot_rules(session, org, lot_id, overrides)
