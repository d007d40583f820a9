"""Version-1 thing models: which ``data`` each reading ``kind`` must carry (SPEC §1).

Units are part of field names (``weight_kg``, ``energy_kwh``) so kg can never be read as t.
A model lists its required fields with a check each; optional fields are checked when present;
fields a model does not name are allowed (vendors may add their own).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from attestation.errors import InvalidThingData, InvalidReading

__all__ = ["THING_MODELS", "ThingModel", "check_data"]

Check = Callable[[Any], bool]
_HEX64 = re.compile(r"[0-9a-f]{64}")


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _non_negative(v: Any) -> bool:
    return _number(v) and v >= 0


def _count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _boolean(v: Any) -> bool:
    return isinstance(v, bool)


def _lat(v: Any) -> bool:
    return _number(v) and -90 <= v <= 90


def _lon(v: Any) -> bool:
    return _number(v) and -180 <= v <= 180


def _hex64(v: Any) -> bool:
    return isinstance(v, str) and bool(_HEX64.fullmatch(v))


def _strings(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(t, str) for t in v)


_RULES: dict[Check, str] = {
    _number: "a finite number",
    _non_negative: "a number >= 0",
    _count: "an integer >= 0",
    _boolean: "true or false",
    _lat: "degrees latitude in [-90, 90]",
    _lon: "degrees longitude in [-180, 180]",
    _hex64: "64 lowercase hex digits",
    _strings: "an array of strings",
}


@dataclass(frozen=True)
class ThingModel:
    kind: str
    version: int
    description: str
    required: dict[str, Check] = field(default_factory=dict)
    optional: dict[str, Check] = field(default_factory=dict)
    checks: dict[str, Check] = field(init=False, repr=False, compare=False)  # required, then optional

    def __post_init__(self) -> None:
        object.__setattr__(self, "checks", {**self.required, **self.optional})

    def describe(self) -> dict[str, Any]:
        """A JSON description for ``GET /v1/thing-models``."""
        return {
            "kind": self.kind,
            "version": self.version,
            "description": self.description,
            "required": {k: _RULES[c] for k, c in self.required.items()},
            "optional": {k: _RULES[c] for k, c in self.optional.items()},
        }


THING_MODELS: dict[str, ThingModel] = {
    m.kind: m
    for m in [
        ThingModel("load_cell", 1, "Load cell or weighbridge", {"weight_kg": _non_negative}),
        ThingModel("rfid_inventory", 1, "RFID inventory count", {"count": _count}, {"tags": _strings}),
        ThingModel("location", 1, "Geofence / UWB position", {"lat": _lat, "lon": _lon}, {"accuracy_m": _non_negative}),
        ThingModel("camera_frame", 1, "Hash of a camera frame", {"frame_sha256": _hex64}),
        ThingModel("power_meter", 1, "Cumulative energy meter", {"energy_kwh": _non_negative}, {"power_kw": _number}),
        ThingModel("equipment_state", 1, "Production equipment run state", {"running": _boolean}),
        ThingModel("temp_humidity", 1, "Temperature and humidity", {"temp_c": _number, "rh_pct": _number}),
        ThingModel("smoke_alarm", 1, "Smoke alarm", {"alarm": _boolean}),
        ThingModel("water_alarm", 1, "Water-level alarm", {"alarm": _boolean}, {"level_mm": _number}),
        ThingModel("heartbeat", 1, "Device liveness heartbeat"),
    ]
}


def check_data(kind: str, data: Any) -> None:
    """Raise :class:`InvalidThingData` naming the field and rule ``data`` breaks."""
    model = THING_MODELS.get(kind)
    if model is None:
        raise InvalidReading(f"payload.kind {kind!r} is not a known thing model ({', '.join(THING_MODELS)})", field="payload.kind")
    if not isinstance(data, dict):
        raise InvalidThingData("payload.data must be a JSON object", field="payload.data")
    for name, check in model.required.items():
        if name not in data:
            raise InvalidThingData(f"payload.data.{name} is required for kind {kind} ({_RULES[check]})", field=f"payload.data.{name}")
    for name, check in model.checks.items():
        if name in data and not check(data[name]):
            raise InvalidThingData(f"payload.data.{name} must be {_RULES[check]} for kind {kind}", field=f"payload.data.{name}")
