"""Rule thresholds: defaults, a warehouse's own, and a lot's override, each layer over the one below.

A warehouse sets its thresholds (``PUT /v1/rules``) and may override them for one lot
(``PUT /v1/lots/{id}/rules``: a lot's geofence, its expected RFID count). Only the fields a layer
sets are stored, so a later change of a default reaches every lot that did not override it.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from ledger.errors import Invalid
from ledger.store.models import Lot, SupervisionRules

__all__ = ["Circle", "Polygon", "RuleName", "RulesConfig", "effective_config", "rules_view", "set_rules"]

RuleName = Literal[
    "weight_drop", "unexplained_movement", "geofence_exit", "rfid_shortfall", "device_silent",
    "smoke_alarm", "water_alarm", "temperature", "chain_gap", "dual_location",
]  # fmt: skip


class Circle(BaseModel):
    """A circular geofence: centre and radius."""

    model_config = ConfigDict(extra="forbid")
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    radius_m: float = Field(gt=0, le=100_000)


class Polygon(BaseModel):
    """A polygonal geofence: its corners as ``[lat, lon]`` in order (closed implicitly)."""

    model_config = ConfigDict(extra="forbid")
    polygon: list[tuple[float, float]] = Field(min_length=3, max_length=1000)

    @model_validator(mode="after")
    def _degrees(self) -> Polygon:
        for lat, lon in self.polygon:
            if not (-90 <= lat <= 90 and -180 <= lon <= 180):
                raise ValueError("polygon corners are [lat, lon] in degrees")
        return self


class RulesConfig(BaseModel):
    """Every threshold of every rule (README "Supervision"). Fields left out keep the layer below."""

    model_config = ConfigDict(extra="forbid")

    disabled: list[RuleName] = Field(default_factory=list, description="rules that raise nothing here")
    weight_tolerance_pct: float = Field(
        2.0, ge=0, le=100, description="weight_drop: percent of the expected weight (at pledge, less approved outbound) it may fall short")
    movement_threshold_pct: float = Field(
        1.0, gt=0, le=100, description="unexplained_movement: a change between two readings of one load cell at least this large needs an event")
    movement_window_s: float = Field(
        300.0, gt=0, le=86_400, description="unexplained_movement: seconds before and after the change to look for a camera frame or vehicle")
    vehicle_devices: list[str] = Field(
        default_factory=list, max_length=200, description="location devices on vehicles or gates: their fixes inside the geofence are vehicle events")
    geofence: Circle | Polygon | None = Field(None, description="geofence_exit: where the lot's location tags must stay")
    geofence_margin_m: float = Field(0.0, ge=0, le=10_000, description="geofence_exit: metres beyond the fence tolerated, besides each fix's accuracy_m")
    rfid_expected_count: int | None = Field(
        None, ge=0, description="rfid_shortfall: tags that must be seen; default the count at pledge, less approved outbound in proportion")
    rfid_tolerance: int = Field(0, ge=0, description="rfid_shortfall: tags that may be missing")
    heartbeat_interval_s: float = Field(
        600.0, gt=0, le=30 * 86_400, description="device_silent: a device of a pledged lot heard from less often than this is silent")
    temp_min_c: float = Field(-20.0, ge=-100, le=200, description="temperature: lowest acceptable temp_c")
    temp_max_c: float = Field(50.0, ge=-100, le=200, description="temperature: highest acceptable temp_c")
    alert_on_restart: bool = Field(False, description="chain_gap: also alert when a device restarts its chain (prev null)")
    max_speed_kmh: float = Field(120.0, gt=0, le=100_000, description="dual_location: fastest plausible move between two fixes of one device")

    @model_validator(mode="after")
    def _temperatures(self) -> RulesConfig:
        if self.temp_min_c >= self.temp_max_c:
            raise ValueError("temp_min_c must be below temp_max_c")
        return self


DEFAULTS = RulesConfig()


def _stored(session: Session, warehouse_id: str, lot_id: str = "") -> dict[str, Any]:
    row = session.get(SupervisionRules, (warehouse_id, lot_id))
    return json.loads(row.config) if row is not None else {}


def _merge(*layers: dict[str, Any]) -> RulesConfig:
    merged: dict[str, Any] = {}
    for layer in layers:
        merged.update(layer)
    return RulesConfig.model_validate(merged)


def effective_config(session: Session, lot: Lot) -> RulesConfig:
    """The thresholds in force for ``lot``: defaults, its warehouse's, then the lot's own."""
    return _merge(_stored(session, lot.warehouse_id), _stored(session, lot.warehouse_id, lot.id))


def configs_for(session: Session, lots: list[Lot]) -> dict[str, RulesConfig]:
    """:func:`effective_config` of many lots in one query."""
    if not lots:
        return {}
    warehouses = {lot.warehouse_id for lot in lots}
    rows = session.scalars(select(SupervisionRules).where(SupervisionRules.warehouse_id.in_(warehouses))).all()
    stored = {(r.warehouse_id, r.lot_id): json.loads(r.config) for r in rows}
    return {lot.id: _merge(stored.get((lot.warehouse_id, ""), {}), stored.get((lot.warehouse_id, lot.id), {})) for lot in lots}


def rules_view(session: Session, warehouse_id: str, lot: Lot | None = None) -> dict[str, Any]:
    """Each layer and the result: ``defaults``, ``warehouse`` (its overrides), ``lot`` (the lot's, if
    asked for one) and ``effective``."""
    layers = [_stored(session, warehouse_id)] + ([_stored(session, warehouse_id, lot.id)] if lot is not None else [])
    view: dict[str, Any] = {
        "lot": lot.id if lot is not None else None,
        "defaults": DEFAULTS.model_dump(mode="json"),
        "warehouse_overrides": layers[0],
        "lot_overrides": layers[1] if lot is not None else None,
        "effective": _merge(*layers).model_dump(mode="json"),
    }
    return view


def set_rules(session: Session, warehouse_id: str, overrides: dict[str, Any], lot: Lot | None = None) -> dict[str, Any]:
    """Replace the warehouse's overrides (or the lot's) with ``overrides``; an empty object restores
    the layer below. Raises :class:`Invalid` (``invalid_rules``) if a field or the result is invalid."""
    try:
        checked = RulesConfig.model_validate(overrides).model_dump(mode="json", exclude_unset=True)
        below = [_stored(session, warehouse_id)] if lot is not None else []
        _merge(*below, checked)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "rules"
        raise Invalid(f"{where}: {first.get('msg', 'invalid value')} (GET the rules to see every field and its default)",
                      code="invalid_rules") from None
    key = (warehouse_id, lot.id if lot is not None else "")
    row = session.get(SupervisionRules, key)
    if row is None:
        row = SupervisionRules(warehouse_id=key[0], lot_id=key[1], config="{}")
        session.add(row)
    row.config = json.dumps(checked, sort_keys=True)
    session.flush()
    return rules_view(session, warehouse_id, lot)
