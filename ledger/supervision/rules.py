"""The supervision rules: what in a lot's readings raises an alert, and on which evidence.

Each rule looks at one accepted reading (or, for ``device_silent``, at the clock) in the context of
its lot and returns :class:`Finding` s: the rule, the lot and device, the evidence readings' ids and
the figures it compared. :mod:`ledger.supervision.loop` turns findings into alerts and freezes.

Weight and RFID are compared with the **baseline at pledge**, never reading to reading, so many
small withdrawals add up (fraud case 7): the baseline is each device's last reading received at or
before the pledge was confirmed (its first reading after, if it had none), and the quantity the
lot should hold is that baseline less the approved outbound since: the lot's confirmed
``PartialRelease``, ``SubstituteOut`` and ``Release`` actions (and plus its ``SubstituteIn`` and
``CureWithGoods``), read from their signed typed data. A confirmed ``Unfreeze`` (bank and warehouse
together) is a new baseline: both accepted the goods as they were then.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, or_, select
from sqlalchemy.orm import Session

from attestation.readings import parse_reading
from ledger.store.models import Action, Device, DeviceGap, Lot, LotDevice, Reading, SupervisionCheck
from ledger.supervision.config import RulesConfig
from ledger.supervision.geo import distance_m, outside_by_m

__all__ = ["RULES", "Context", "Finding", "Rule", "Row", "evaluate", "evaluate_check", "silent_devices"]


@dataclass(frozen=True)
class Rule:
    name: str
    severity: str  # critical: alert and freeze the lot; warning: alert only
    scope: str  # lot: one open alert per lot; device: one per device of the lot
    insurer: bool  # the lot's insurer is told too (fire, water, temperature)
    summary: str


RULES: dict[str, Rule] = {r.name: r for r in (
    Rule("weight_drop", "critical", "lot", False, "the lot weighs less than at pledge less approved outbound, beyond the tolerance"),
    Rule("unexplained_movement", "warning", "device", False, "a weight change with no camera frame or vehicle in the lot's geofence around it"),
    Rule("geofence_exit", "critical", "device", False, "a location tag of the lot reports outside the lot's geofence"),
    Rule("rfid_shortfall", "critical", "lot", False, "fewer RFID tags seen than pledged, less approved outbound"),
    Rule("device_silent", "critical", "device", False, "a device of a pledged lot silent beyond its heartbeat interval"),
    Rule("smoke_alarm", "critical", "device", True, "a smoke alarm"),
    Rule("water_alarm", "critical", "device", True, "a water-level alarm"),
    Rule("temperature", "warning", "device", True, "a temperature outside the lot's range"),
    Rule("chain_gap", "critical", "device", False, "a break in a device's hash chain: readings withheld or lost"),
    Rule("dual_location", "critical", "device", False, "one device key reporting from two places: a forked chain or an impossible move"),
)}  # fmt: skip

#: Lot statuses (cached from the chain) under supervision: alerts are raised; a freeze needs pledged/margin_call.
SUPERVISED = ("pledged", "margin_call", "frozen")
#: Lot statuses in which the insurer-facing rules still run (goods are in the warehouse).
HELD = ("inbound", "verified", "pledged", "margin_call", "frozen", "defaulted", "enforcement")
#: Reading kinds some rule reads the data of.
KINDS = ("load_cell", "rfid_inventory", "location", "smoke_alarm", "water_alarm", "temp_humidity")
#: Kilograms per unit of the units a lot's quantity may be counted in; others are scaled by the baseline.
MASS_UNITS = {"kg": 1.0, "t": 1000.0, "g": 0.001, "lb": 0.45359237}
#: Lot quantity changes of confirmed actions, from their typed-data message.
MOVES: dict[str, Callable[[dict[str, Any]], int]] = {
    "PartialRelease": lambda m: -int(m["quantity"]),
    "Release": lambda m: -int(m["quantity"]),
    "SubstituteOut": lambda m: -int(m["quantityOut"]),
    "SubstituteIn": lambda m: int(m["quantityIn"]),
    "CureWithGoods": lambda m: int(m["quantityIn"]),
}
#: Smallest jump between two fixes of one device counted as "two places" (GPS jitter is below).
MIN_JUMP_M = 100.0


@dataclass
class Row:
    """An accepted reading as the rules see it; ``ts`` and ``received_at`` naive UTC."""

    pk: int
    id: str
    device_id: str
    kind: str
    lot: str | None
    ts: datetime
    received_at: datetime
    prev_mismatch: bool
    envelope: str | None = None
    _payload: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def payload(self) -> dict[str, Any]:
        if self._payload is None:
            raw = json.loads(self.envelope or "{}")
            self._payload = raw["payload"] if "payload" in raw else parse_reading(raw).payload
        return self._payload

    @property
    def data(self) -> dict[str, Any]:
        return self.payload.get("data") or {}


ROW_COLUMNS = (Reading.pk, Reading.id, Reading.device_id, Reading.kind, Reading.lot, Reading.ts, Reading.received_at,
               Reading.prev_mismatch)  # fmt: skip


def row_select(*, every_kind: bool = False) -> Any:
    """A SELECT of :class:`Row` columns, with the envelope only for kinds some rule reads (or ``every_kind``)."""
    envelope = Reading.envelope if every_kind else case((Reading.kind.in_(KINDS), Reading.envelope), else_=None)
    return select(*ROW_COLUMNS, envelope.label("envelope"))


def to_row(r: Any) -> Row:
    return Row(r.pk, r.id, r.device_id, r.kind, r.lot, r.ts, r.received_at, bool(r.prev_mismatch), r.envelope)


@dataclass
class Finding:
    rule: str
    lot_id: str
    device_id: str | None
    readings: list[str]
    detail: dict[str, Any]
    trigger_pk: int | None = None

    @property
    def severity(self) -> str:
        return RULES[self.rule].severity


@dataclass
class Anchor:
    """The moment the lot's baseline was taken and what the chain says it held then and since."""

    kind: str  # pledge | unfreeze
    at: datetime  # naive UTC, the action's confirmation
    quantity: int  # the lot's quantity at the anchor
    change: int  # approved change since (negative: outbound)
    actions: list[str]  # those actions' ids
    min_quantity: int

    @property
    def quantity_now(self) -> int:
        return self.quantity + self.change


class Context:
    """One evaluation pass: the session, the time, and caches of lots, configs and baselines."""

    def __init__(self, session: Session, now: datetime, configs: Callable[[list[Lot]], dict[str, RulesConfig]],
                 baselines: dict[Any, Any] | None = None) -> None:
        self.session = session
        self.now = now  # naive UTC
        self._configs = configs
        self._lots: dict[str, Lot | None] = {}
        self._config: dict[str, RulesConfig] = {}
        self._device_lot: dict[str, str | None] = {}
        self._anchors: dict[str, Anchor | None] = {}
        self.baselines = baselines if baselines is not None else {}  # (lot, device, kind, anchor at) -> Row
        self.checks: list[SupervisionCheck] = []

    def lot(self, lot_id: str | None) -> Lot | None:
        if lot_id is None:
            return None
        if lot_id not in self._lots:
            self._lots[lot_id] = self.session.get(Lot, lot_id)
        return self._lots[lot_id]

    def preload_lots(self, lot_ids: set[str]) -> None:
        """Look up many lots in one query (a page of readings names a few hundred at most)."""
        wanted = [i for i in lot_ids if i not in self._lots]
        if wanted:
            found = {lot.id: lot for lot in self.session.scalars(select(Lot).where(Lot.id.in_(wanted)))}
            self._lots.update({i: found.get(i) for i in wanted})

    def lot_of(self, row: Row) -> Lot | None:
        """The reading's lot, or the lot its device supervises when the reading names none."""
        return self.lot_for(row.lot, row.device_id)

    def lot_for(self, lot_id: str | None, device_id: str) -> Lot | None:
        """:meth:`lot_of` a reading that names ``lot_id`` and comes from ``device_id``."""
        if lot_id is not None:
            return self.lot(lot_id)
        if device_id not in self._device_lot:
            self._device_lot[device_id] = self.session.scalar(
                select(LotDevice.lot_id).where(LotDevice.device_id == device_id).limit(1)
            ) or self.session.scalar(select(Device.lot).where(Device.id == device_id))
        return self.lot(self._device_lot[device_id])

    def config(self, lot: Lot) -> RulesConfig:
        if lot.id not in self._config:
            self._config.update(self._configs([lot]))
        return self._config[lot.id]

    # -- queries the rules share ----------------------------------------------------------------

    def anchor(self, lot: Lot) -> Anchor | None:
        """The lot's baseline moment: its last confirmed pledge, or a later confirmed unfreeze."""
        if lot.id not in self._anchors:
            self._anchors[lot.id] = self._anchor(lot)
        return self._anchors[lot.id]

    def _anchor(self, lot: Lot) -> Anchor | None:
        rows = self.session.execute(
            select(Action.id, Action.primary_type, Action.typed_data, Action.confirmed_at)
            .where(Action.lot_id == lot.id, Action.status == "confirmed",
                   Action.primary_type.in_(["Pledge", "Unfreeze", *MOVES]))
            .order_by(Action.confirmed_at, Action.created_at)
        ).all()  # fmt: skip
        pledges = [i for i, r in enumerate(rows) if r.primary_type == "Pledge"]
        if not pledges:
            return None
        first = pledges[-1]
        pledge = json.loads(rows[first].typed_data)["message"]
        anchor = Anchor("pledge", rows[first].confirmed_at, int(pledge["quantity"]), 0, [], int(pledge["minQuantity"]))
        for r in rows[first + 1 :]:
            if r.primary_type == "Unfreeze":
                anchor = Anchor("unfreeze", r.confirmed_at, anchor.quantity_now, 0, [], anchor.min_quantity)
            else:
                anchor.change += MOVES[r.primary_type](json.loads(r.typed_data)["message"])
                anchor.actions.append(r.id)
        return anchor

    def lot_devices(self, lot: Lot, also: str | None = None) -> list[str]:
        ids = set(self.session.scalars(select(LotDevice.device_id).where(LotDevice.lot_id == lot.id)))
        ids |= set(self.session.scalars(select(Device.id).where(Device.lot == lot.id)))
        if also:
            ids.add(also)
        return sorted(ids)

    def _one(self, *conditions: Any, newest: bool) -> Row | None:
        order = Reading.seq.desc() if newest else Reading.seq
        found = self.session.execute(row_select().where(*conditions).order_by(order).limit(1)).first()
        return to_row(found) if found is not None else None

    def series(self, lot: Lot, kind: str, anchor: Anchor, upto: Row) -> dict[str, tuple[Row, Row]]:
        """For each device of the lot with ``kind`` readings of it: (its baseline at ``anchor``, its
        latest reading up to ``upto``)."""
        pairs = {}
        for device in self.lot_devices(lot, also=upto.device_id):
            same = (Reading.device_id == device, Reading.kind == kind, Reading.lot == lot.id)
            key = (lot.id, device, kind, anchor.at)
            base = self.baselines.get(key)
            if base is None:
                base = self._one(*same, Reading.received_at <= anchor.at, newest=True) or self._one(
                    *same, Reading.received_at > anchor.at, newest=False)  # fmt: skip
                if base is None:
                    continue
                self.baselines[key] = base
            current = upto if upto.device_id == device and upto.kind == kind else self._one(*same, Reading.pk <= upto.pk, newest=True)
            if current is not None and current.pk >= base.pk:
                pairs[device] = (base, current)
        return pairs

    def previous(self, row: Row) -> Row | None:
        """The same device's reading of the same kind just before ``row``."""
        return self._one(Reading.device_id == row.device_id, Reading.kind == row.kind, Reading.pk < row.pk, newest=True)


# -- the rules ----------------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else None


def weight_drop(ctx: Context, row: Row, lot: Lot, cfg: RulesConfig) -> list[Finding]:
    anchor = ctx.anchor(lot)
    if anchor is None:
        return []
    pairs = ctx.series(lot, "load_cell", anchor, row)
    if not pairs:
        return []
    baseline = sum(_number(b.data.get("weight_kg")) or 0.0 for b, _ in pairs.values())
    measured = sum(_number(c.data.get("weight_kg")) or 0.0 for _, c in pairs.values())
    per_unit = MASS_UNITS.get(lot.unit.lower()) or (baseline / anchor.quantity if anchor.quantity else 0.0)
    expected = baseline + anchor.change * per_unit
    shortfall = expected - measured
    if expected <= 0 or shortfall <= expected * cfg.weight_tolerance_pct / 100:
        return []
    quantity = measured / per_unit if per_unit else None
    evidence = [r.id for pair in pairs.values() for r in pair]
    return [Finding("weight_drop", lot.id, row.device_id, list(dict.fromkeys(evidence)), {
        "baseline_kg": round(baseline, 3), "expected_kg": round(expected, 3), "measured_kg": round(measured, 3),
        "shortfall_kg": round(shortfall, 3), "shortfall_pct": round(100 * shortfall / expected, 3),
        "tolerance_pct": cfg.weight_tolerance_pct, "baseline": anchor.kind, "baseline_at": anchor.at.isoformat() + "Z",
        "approved_outbound": anchor.actions, "quantity_expected": anchor.quantity_now,
        "quantity_measured": round(quantity, 3) if quantity is not None else None, "unit": lot.unit,
        "min_quantity": anchor.min_quantity, "below_minimum": quantity is not None and quantity < anchor.min_quantity,
    }, row.pk)]  # fmt: skip


def rfid_shortfall(ctx: Context, row: Row, lot: Lot, cfg: RulesConfig) -> list[Finding]:
    anchor = ctx.anchor(lot)
    if anchor is None:
        return []
    pairs = ctx.series(lot, "rfid_inventory", anchor, row)
    if not pairs:
        return []
    counted = sum(int(c.data.get("count", 0)) for _, c in pairs.values())
    if cfg.rfid_expected_count is not None:
        expected = float(cfg.rfid_expected_count)
    else:
        at_baseline = sum(int(b.data.get("count", 0)) for b, _ in pairs.values())
        expected = at_baseline * anchor.quantity_now / anchor.quantity if anchor.quantity else float(at_baseline)
    floor = math.floor(expected + 1e-9) - cfg.rfid_tolerance
    if counted >= floor:
        return []
    evidence = [r.id for pair in pairs.values() for r in pair]
    return [Finding("rfid_shortfall", lot.id, row.device_id, list(dict.fromkeys(evidence)), {
        "expected_count": math.floor(expected + 1e-9), "counted": counted, "tolerance": cfg.rfid_tolerance,
        "configured": cfg.rfid_expected_count is not None, "baseline": anchor.kind,
        "baseline_at": anchor.at.isoformat() + "Z", "approved_outbound": anchor.actions,
    }, row.pk)]  # fmt: skip


def _vehicle_or_video(ctx: Context, lot: Lot, cfg: RulesConfig, start: datetime, end: datetime) -> str | None:
    """The id of a camera frame of the lot, or a vehicle's fix inside the lot's geofence (on the lot if it
    has none), stamped within ``[start, end]``."""
    frame = ctx.session.scalar(
        select(Reading.id).where(Reading.lot == lot.id, Reading.kind == "camera_frame", Reading.ts >= start, Reading.ts <= end).limit(1)
    )
    if frame is not None or not cfg.vehicle_devices:
        return frame
    fixes = ctx.session.execute(
        row_select().where(Reading.device_id.in_(cfg.vehicle_devices), Reading.kind == "location", Reading.ts >= start, Reading.ts <= end)
    ).all()
    for fix in map(to_row, fixes):
        lat, lon = _number(fix.data.get("lat")), _number(fix.data.get("lon"))
        if cfg.geofence is None:
            if fix.lot == lot.id:
                return fix.id
        elif lat is not None and lon is not None and outside_by_m(cfg.geofence, lat, lon) <= (_number(fix.data.get("accuracy_m")) or 0.0):
            return fix.id
    return None


def unexplained_movement(ctx: Context, row: Row, lot: Lot, cfg: RulesConfig) -> list[Finding]:
    """Fraud case 9: a weight change needs a camera frame or a vehicle within the window around it. If
    none is there yet, the check waits (a :class:`SupervisionCheck`) until the window has passed."""
    weight, before = _number(row.data.get("weight_kg")), ctx.previous(row)
    previous = _number(before.data.get("weight_kg")) if before is not None else None
    if weight is None or previous is None:
        return []
    change = weight - previous
    if abs(change) < max(previous, 1e-9) * cfg.movement_threshold_pct / 100:
        return []
    detail = {"previous_kg": previous, "weight_kg": weight, "change_kg": round(change, 3), "threshold_pct": cfg.movement_threshold_pct,
              "window_s": cfg.movement_window_s, "previous_reading": before.id}  # type: ignore[union-attr]
    window = timedelta(seconds=cfg.movement_window_s)
    if _vehicle_or_video(ctx, lot, cfg, row.ts - window, row.ts + window) is not None:
        return []
    due = row.received_at + window
    if due > ctx.now:
        ctx.checks.append(SupervisionCheck(rule="unexplained_movement", lot_id=lot.id, device_id=row.device_id, reading_id=row.id,
                                           due_at=due, detail=json.dumps(detail)))  # fmt: skip
        return []
    return [Finding("unexplained_movement", lot.id, row.device_id, [before.id, row.id], detail, row.pk)]  # type: ignore[union-attr]


def evaluate_check(ctx: Context, check: SupervisionCheck) -> list[Finding]:
    """Decide a waiting check whose window has passed."""
    lot = ctx.lot(check.lot_id)
    found = ctx.session.execute(row_select().where(Reading.id == check.reading_id)).first()
    if lot is None or found is None or check.rule != "unexplained_movement":
        return []
    row, cfg, detail = to_row(found), ctx.config(lot), json.loads(check.detail)
    window = timedelta(seconds=detail["window_s"])
    if "unexplained_movement" in cfg.disabled or _vehicle_or_video(ctx, lot, cfg, row.ts - window, row.ts + window) is not None:
        return []
    return [Finding("unexplained_movement", lot.id, row.device_id, [detail["previous_reading"], row.id], detail, row.pk)]


def geofence_exit(ctx: Context, row: Row, lot: Lot, cfg: RulesConfig) -> list[Finding]:
    lat, lon = _number(row.data.get("lat")), _number(row.data.get("lon"))
    if cfg.geofence is None or lat is None or lon is None or row.device_id in cfg.vehicle_devices:
        return []
    accuracy = _number(row.data.get("accuracy_m")) or 0.0
    outside = outside_by_m(cfg.geofence, lat, lon)
    if outside <= accuracy + cfg.geofence_margin_m:
        return []
    return [Finding("geofence_exit", lot.id, row.device_id, [row.id], {
        "lat": lat, "lon": lon, "accuracy_m": accuracy, "outside_by_m": round(outside, 1), "margin_m": cfg.geofence_margin_m,
        "geofence": cfg.geofence.model_dump(mode="json"),
    }, row.pk)]  # fmt: skip


def location_jump(ctx: Context, row: Row, lot: Lot, cfg: RulesConfig) -> list[Finding]:
    """A sensor reporting from two places: two fixes of one device further apart than it could travel."""
    lat, lon, before = _number(row.data.get("lat")), _number(row.data.get("lon")), ctx.previous(row)
    if lat is None or lon is None or before is None or row.device_id in cfg.vehicle_devices:
        return []
    lat0, lon0 = _number(before.data.get("lat")), _number(before.data.get("lon"))
    if lat0 is None or lon0 is None:
        return []
    apart = distance_m(lat0, lon0, lat, lon)
    slack = max(MIN_JUMP_M, (_number(row.data.get("accuracy_m")) or 0.0) + (_number(before.data.get("accuracy_m")) or 0.0))
    seconds = (row.ts - before.ts).total_seconds()
    speed_kmh = math.inf if seconds <= 0 else (apart - slack) / seconds * 3.6
    if apart <= slack or speed_kmh <= cfg.max_speed_kmh:
        return []
    return [Finding("dual_location", lot.id, row.device_id, [before.id, row.id], {
        "how": "location_jump", "distance_m": round(apart, 1), "seconds": seconds,
        "speed_kmh": None if math.isinf(speed_kmh) else round(speed_kmh, 1), "max_speed_kmh": cfg.max_speed_kmh,
    }, row.pk)]  # fmt: skip


def _alarm(rule: str) -> Callable[[Context, Row, Lot, RulesConfig], list[Finding]]:
    def check(ctx: Context, row: Row, lot: Lot, cfg: RulesConfig) -> list[Finding]:
        if row.data.get("alarm") is not True:
            return []
        return [Finding(rule, lot.id, row.device_id, [row.id], {k: v for k, v in row.data.items() if k in ("alarm", "level_mm")}, row.pk)]

    return check


def temperature(ctx: Context, row: Row, lot: Lot, cfg: RulesConfig) -> list[Finding]:
    temp = _number(row.data.get("temp_c"))
    if temp is None or cfg.temp_min_c <= temp <= cfg.temp_max_c:
        return []
    return [Finding("temperature", lot.id, row.device_id, [row.id],
                    {"temp_c": temp, "rh_pct": row.data.get("rh_pct"), "min_c": cfg.temp_min_c, "max_c": cfg.temp_max_c}, row.pk)]


def chain_gaps(ctx: Context, row: Row, lot: Lot, cfg: RulesConfig, gap: DeviceGap) -> list[Finding]:
    """Fraud cases 10 and 11 from the gap ingest recorded: ``prev_mismatch`` (withheld or lost readings),
    ``fork`` (one key in two places), ``restart`` (only if ``alert_on_restart``)."""
    evidence = [row.id] + [d for d in (gap.expected_prev, gap.claimed_prev) if d]
    detail = {"gap": gap.kind, "seq": gap.seq, "previous_seq": gap.previous_seq, "expected_prev": gap.expected_prev,
              "claimed_prev": gap.claimed_prev}  # fmt: skip
    if gap.kind == "fork":
        return [Finding("dual_location", lot.id, row.device_id, list(dict.fromkeys(evidence)), {"how": "fork", **detail}, row.pk)]
    if gap.kind == "prev_mismatch" or (gap.kind == "restart" and cfg.alert_on_restart):
        stored = set(ctx.session.scalars(select(Reading.id).where(Reading.id.in_(evidence))))
        return [Finding("chain_gap", lot.id, row.device_id, [e for e in dict.fromkeys(evidence) if e in stored], detail, row.pk)]
    return []


#: The rules each reading kind triggers, and the lot statuses they run in.
BY_KIND: dict[str, list[tuple[Callable[[Context, Row, Lot, RulesConfig], list[Finding]], str, tuple[str, ...]]]] = {
    "load_cell": [(weight_drop, "weight_drop", SUPERVISED), (unexplained_movement, "unexplained_movement", SUPERVISED)],
    "rfid_inventory": [(rfid_shortfall, "rfid_shortfall", SUPERVISED)],
    "location": [(geofence_exit, "geofence_exit", SUPERVISED), (location_jump, "dual_location", SUPERVISED)],
    "smoke_alarm": [(_alarm("smoke_alarm"), "smoke_alarm", HELD)],
    "water_alarm": [(_alarm("water_alarm"), "water_alarm", HELD)],
    "temp_humidity": [(temperature, "temperature", HELD)],
}


def evaluate(ctx: Context, row: Row, gap: DeviceGap | None = None) -> list[Finding]:
    """Every finding ``row`` raises (``gap``: the hash-chain break ingest recorded for it, if any)."""
    lot = ctx.lot_of(row)
    if lot is None:
        return []
    cfg = ctx.config(lot)
    findings = []
    for check, name, statuses in BY_KIND.get(row.kind, []):
        if lot.status in statuses and name not in cfg.disabled:
            findings += check(ctx, row, lot, cfg)
    if gap is not None and lot.status in SUPERVISED:
        findings += [f for f in chain_gaps(ctx, row, lot, cfg, gap) if f.rule not in cfg.disabled]
    return findings


def silent_devices(ctx: Context) -> list[Finding]:
    """``device_silent`` for every device of a supervised lot not heard from for longer than its
    lot's heartbeat interval (counted from its last reading received, its registration, or the lot's
    last unfreeze, whichever is latest)."""
    rows = ctx.session.execute(
        select(Lot.id, Device.id.label("device"), Device.created_at, Device.last_seq)
        .select_from(Lot)
        .join(LotDevice, LotDevice.lot_id == Lot.id, isouter=True)
        .join(Device, or_(Device.id == LotDevice.device_id, and_(Device.lot == Lot.id)))
        .where(Lot.status.in_(SUPERVISED))
        .distinct()
    ).all()
    findings = []
    for lot_id, device_id, created_at, last_seq in rows:
        lot = ctx.lot(lot_id)
        if lot is None:
            continue
        cfg = ctx.config(lot)
        if "device_silent" in cfg.disabled:
            continue
        last = None
        if last_seq is not None:
            last = ctx.session.execute(select(Reading.id, Reading.received_at).where(Reading.device_id == device_id, Reading.seq == last_seq)).first()
        heard = max(created_at, last.received_at) if last is not None else created_at
        anchor = ctx.anchor(lot)
        if anchor is not None and anchor.kind == "unfreeze":  # bank and warehouse accepted the lot as it was then
            heard = max(heard, anchor.at)
        silent = (ctx.now - heard).total_seconds()
        if silent > cfg.heartbeat_interval_s:
            findings.append(Finding("device_silent", lot_id, device_id, [last.id] if last is not None else [], {
                "last_heard_at": heard.isoformat() + "Z", "silent_s": round(silent, 1), "heartbeat_interval_s": cfg.heartbeat_interval_s,
                "last_reading": last.id if last is not None else None,
            }))  # fmt: skip
    return findings
