from __future__ import annotations

import copy
import hashlib

import pytest

from attestation.encoding import canonical_json
from attestation.errors import InvalidReading, InvalidSignature, InvalidThingData
from attestation.readings import parse_reading, parse_timestamp
from ledger.simulator import SimulatedDevice


@pytest.fixture
def device() -> SimulatedDevice:
    return SimulatedDevice("wh1-scale-03", "load_cell", lot="LOT-2026-0001")


def test_valid_reading_digest_and_signature(device: SimulatedDevice) -> None:
    env = device.reading({"weight_kg": 1250.5})
    r = parse_reading(env)
    assert r.digest == hashlib.sha256(canonical_json(env["payload"])).digest()
    assert r.id == r.digest.hex() and r.seq == 1 and r.prev is None and r.lot == "LOT-2026-0001"
    r.verify(device.public_key_pem)
    nxt = parse_reading(device.reading({"weight_kg": 1250.0}))
    assert nxt.prev == r.id  # hash chain


def test_reserialised_json_keeps_digest(device: SimulatedDevice) -> None:
    """Fraud case 13: key order and whitespace of the received JSON do not matter."""
    import json

    env = device.reading({"weight_kg": 1250.5})
    reordered = json.loads(json.dumps({"sig": env["sig"], "alg": env["alg"],
                                       "payload": dict(reversed(list(env["payload"].items())))}, indent=3))
    assert parse_reading(reordered).digest == parse_reading(env).digest
    parse_reading(reordered).verify(device.public_key_pem)


@pytest.mark.parametrize(
    "path,value,field",
    [
        (("payload", "v"), 2, "payload.v"),
        (("payload", "v"), 1.0, "payload.v"),
        (("payload", "device"), "bad id", "payload.device"),
        (("payload", "device"), "x" * 65, "payload.device"),
        (("payload", "seq"), -1, "payload.seq"),
        (("payload", "seq"), 1.5, "payload.seq"),
        (("payload", "seq"), True, "payload.seq"),
        (("payload", "seq"), 2**53, "payload.seq"),
        (("payload", "prev"), "ABC", "payload.prev"),
        (("payload", "ts"), "2026-11-21T08:00:00+08:00", "payload.ts"),
        (("payload", "ts"), "2026-13-21T08:00:00Z", "payload.ts"),
        (("payload", "kind"), "teleporter", "payload.kind"),
        (("payload", "data"), {"weight_t": 1.2}, "payload.data.weight_kg"),
        (("payload", "data"), {"weight_kg": -1}, "payload.data.weight_kg"),
        (("payload", "data"), {"weight_kg": "12"}, "payload.data.weight_kg"),
        (("alg",), "RS256", "alg"),
        (("sig",), "not base64!", "sig"),
    ],
)
def test_invalid_fields_are_named(device: SimulatedDevice, path: tuple[str, ...], value: object, field: str) -> None:
    env = copy.deepcopy(device.reading({"weight_kg": 1.0}))
    node = env
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    with pytest.raises((InvalidReading, InvalidSignature)) as err:
        parse_reading(env)
    assert err.value.field == field


def test_kg_vs_t_is_not_silently_accepted(device: SimulatedDevice) -> None:
    with pytest.raises(InvalidThingData):
        parse_reading(device.reading({"weight_t": 1.25}))


def test_missing_and_unknown_fields(device: SimulatedDevice) -> None:
    env = device.reading({"weight_kg": 1.0})
    del env["payload"]["lot"]
    with pytest.raises(InvalidReading, match="missing lot"):
        parse_reading(env)
    env = device.reading({"weight_kg": 1.0})
    env["payload"]["extra"] = 1
    with pytest.raises(InvalidReading, match="unknown payload fields"):
        parse_reading(env)
    with pytest.raises(InvalidReading):
        parse_reading([1, 2])


def test_tampered_payload_fails_signature(device: SimulatedDevice) -> None:
    env = device.reading({"weight_kg": 1250.5})
    env["payload"]["data"]["weight_kg"] = 1250.6
    with pytest.raises(InvalidSignature):
        parse_reading(env).verify(device.public_key_pem)


def test_timestamp_parsing() -> None:
    assert parse_timestamp("2026-11-21T08:00:00.123456789Z").microsecond == 123456
    assert parse_timestamp("2026-11-21T08:00:00Z").timestamp() == 1795248000
