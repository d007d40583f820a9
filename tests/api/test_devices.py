"""Device lifecycle over real HTTP: rotation, revocation, visibility; fraud cases 3 and 9."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import httpx
import pytest

from api.main import create_app
from attestation.bundle import chain_query, verify_bundle
from ledger.chain.client import ChainReader
from ledger.simulator import SimulatedDevice
from tests.conftest import LiveServer


@pytest.fixture
def env(db_url, ledger_factory):  # type: ignore[no-untyped-def]
    ledger = ledger_factory(db_url)
    orgs = {role: ledger.create_organisation(name=f"org-{role}", role=role)
            for role in ("operator", "bank", "auditor", "enterprise")}
    orgs["other_operator"] = ledger.create_organisation(name="org-other-op", role="operator")
    with LiveServer(create_app(ledger=ledger)) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        yield ledger, http, {k: {"Authorization": f"Bearer {o.api_key}"} for k, o in orgs.items()}


def successor(device: SimulatedDevice, alg: str | None = None) -> SimulatedDevice:
    """The same device id with a fresh key, continuing its sequence and hash chain."""
    new = SimulatedDevice(device.id, device.kind, alg=alg or device.alg, lot=device.lot)
    new.seq, new.prev = device.seq, device.prev
    return new


def rotation_body(device: SimulatedDevice) -> dict:
    reg = device.registration()
    return {"alg": reg["alg"], "public_key": reg["public_key"], "pop": reg["pop"]}


def post(http: httpx.Client, reading: dict) -> tuple[int, str]:
    r = http.post("/v1/readings", json=reading)
    return r.status_code, (r.json().get("error", {}).get("code") or r.json().get("status"))


def test_rotation_keeps_old_readings_valid_and_swapped_sensor_is_refused(env) -> None:  # type: ignore[no-untyped-def]
    ledger, http, auth = env
    old = SimulatedDevice("wh1-scale-rot", "load_cell", lot="LOT-R")
    assert http.post("/v1/devices", json=old.registration(), headers=auth["operator"]).status_code == 201
    before = datetime.now(timezone.utc) - timedelta(seconds=5)
    first = old.reading({"weight_kg": 500.0}, ts=before)
    assert post(http, first) == (201, "accepted")
    late_but_before_rotation = old.reading({"weight_kg": 500.5}, ts=before + timedelta(seconds=1))

    new = successor(old, alg="EdDSA")
    r = http.post(f"/v1/devices/{old.id}/keys", json=rotation_body(new), headers=auth["operator"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert [k["alg"] for k in body["keys"]] == ["ES256", "EdDSA"] and body["keys"][0]["valid_until"]
    assert body["tx_hash"].startswith("0x")

    assert post(http, late_but_before_rotation) == (201, "accepted")  # stamped before: old key still valid
    new.seq, new.prev = old.seq, old.prev
    stale = successor(old)  # fraud 9: the old key (or any other) keeps reporting under the id
    stale._key = old._key
    assert post(http, stale.reading({"weight_kg": 1.0})) == (422, "algorithm_mismatch")
    swapped = successor(old, alg="EdDSA")  # right algorithm, wrong key
    assert post(http, swapped.reading({"weight_kg": 1.0})) == (422, "invalid_signature")
    assert post(http, new.reading({"weight_kg": 501.0})) == (201, "accepted")

    # on chain: two keys; the pre-rotation reading's proof verifies against the old key
    client = ledger.chain.client
    assert len(client.device_keys(old.id)) == 2
    ledger.anchorer.tick()
    reading_id = http.post("/v1/readings", json=first).json()["id"]
    bundle = http.get(f"/v1/readings/{reading_id}/proof", headers=auth["bank"]).json()
    report = verify_bundle(bundle, ChainReader(ledger.chain.w3).chain_facts(chain_query(bundle)))
    assert report.ok, report.as_dict()

    r = http.post(f"/v1/devices/{old.id}/keys", json=rotation_body(new), headers=auth["operator"])
    assert (r.status_code, r.json()["error"]["code"]) == (409, "same_key")
    forged = rotation_body(successor(old))
    forged["pop"] = rotation_body(successor(old))["pop"]  # a proof of possession made with another key
    r = http.post(f"/v1/devices/{old.id}/keys", json=forged, headers=auth["operator"])
    assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_signature")


def test_revocation_refuses_later_readings(env) -> None:  # type: ignore[no-untyped-def]
    """Fraud case 3: evidence signed by a revoked key."""
    ledger, http, auth = env
    device = SimulatedDevice("wh1-scale-rev", "load_cell")
    assert http.post("/v1/devices", json=device.registration(), headers=auth["operator"]).status_code == 201
    t0 = datetime.now(timezone.utc) - timedelta(seconds=30)
    assert post(http, device.reading({"weight_kg": 1.0}, ts=t0)) == (201, "accepted")

    future = (datetime.now(timezone.utc) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    r = http.post(f"/v1/devices/{device.id}/revoke", json={"at": future}, headers=auth["operator"])
    assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_time")
    r = http.post(f"/v1/devices/{device.id}/revoke", json={}, headers=auth["other_operator"])
    assert (r.status_code, r.json()["error"]["code"]) == (404, "device_not_found")

    at = (t0 + timedelta(seconds=10)).strftime("%Y-%m-%dT%H:%M:%SZ")  # backdated: compromise found late
    r = http.post(f"/v1/devices/{device.id}/revoke", json={"at": at, "reason": "key extracted"}, headers=auth["operator"])
    assert r.status_code == 200, r.text
    assert r.json()["revoked_at"] == at

    assert post(http, device.reading({"weight_kg": 2.0})) == (422, "key_not_valid")
    assert ledger.chain.client.is_revoked(device.id)
    assert ledger.chain.client.key_at(device.id, int(datetime.now(timezone.utc).timestamp())) is None

    r = http.post(f"/v1/devices/{device.id}/keys", json=rotation_body(successor(device)), headers=auth["operator"])
    assert (r.status_code, r.json()["error"]["code"]) == (409, "device_revoked")
    r = http.post(f"/v1/devices/{device.id}/revoke", json={}, headers=auth["operator"])
    assert (r.status_code, r.json()["error"]["code"]) == (409, "device_revoked")


def test_device_visibility(env) -> None:  # type: ignore[no-untyped-def]
    _, http, auth = env
    device = SimulatedDevice("wh1-vis", "temp_humidity")
    assert http.post("/v1/devices", json=device.registration(), headers=auth["operator"]).status_code == 201
    for who in ("operator", "bank", "auditor"):
        r = http.get(f"/v1/devices/{device.id}", headers=auth[who])
        assert r.status_code == 200 and r.json()["keys"][0]["public_key"] == device.public_key_pem
    for who in ("enterprise", "other_operator"):
        r = http.get(f"/v1/devices/{device.id}", headers=auth[who])
        assert (r.status_code, r.json()["error"]["code"]) == (404, "device_not_found")
    r = http.post(f"/v1/devices/{device.id}/keys", json=rotation_body(successor(device)), headers=auth["bank"])
    assert (r.status_code, r.json()["error"]["code"]) == (403, "role_forbidden")
    assert http.get(f"/v1/devices/{device.id}").status_code == 401


def test_thing_models_endpoint(env) -> None:  # type: ignore[no-untyped-def]
    _, http, _ = env
    models = {m["kind"]: m for m in http.get("/v1/thing-models").json()}
    assert set(models) >= {"load_cell", "rfid_inventory", "location", "camera_frame", "power_meter", "equipment_state",
                           "temp_humidity", "smoke_alarm", "water_alarm", "heartbeat"}
    assert models["load_cell"]["required"] == {"weight_kg": "a number >= 0"}
    assert "tags" in models["rfid_inventory"]["optional"]


def test_warehouse_requiring_device_certificates(env) -> None:  # type: ignore[no-untyped-def]
    """X.509 provisioning: keys must chain to the warehouse's configured manufacturer CA."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from ledger.orgs import set_device_ca
    from tests.attestation.test_certificates import cert, pem

    ledger, http, auth = env
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = cert("Maker Root CA", root_key.public_key(), "Maker Root CA", root_key, ca=True, start=datetime.now(timezone.utc) - timedelta(days=1))
    with ledger.db.session() as session:
        set_device_ca(session, name="org-operator", ca_pem=pem(root))

    device = SimulatedDevice("wh1-cert-01", "load_cell")
    r = http.post("/v1/devices", json=device.registration(), headers=auth["operator"])
    assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_certificate")
    leaf = cert(device.id, device._key.public_key(), "Maker Root CA", root_key, ca=False, start=datetime.now(timezone.utc) - timedelta(days=1))
    r = http.post("/v1/devices", json={**device.registration(), "certificate_chain": [pem(leaf)]}, headers=auth["operator"])
    assert r.status_code == 201, r.text

    new = successor(device)  # a rotation needs a certificate too
    r = http.post(f"/v1/devices/{device.id}/keys", json=rotation_body(new), headers=auth["operator"])
    assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_certificate")
    other_operator_device = SimulatedDevice("wh2-nocert", "load_cell")  # the other warehouse requires nothing
    assert http.post("/v1/devices", json=other_operator_device.registration(), headers=auth["other_operator"]).status_code == 201


def test_a_key_whose_signatures_anyone_can_forge_is_not_registered(env) -> None:  # type: ignore[no-untyped-def]
    """Fraud case 9, by design: an operator enrols an Ed25519 key of small order, whose proof of
    possession and readings anyone can "sign" (R = B, S = 1 under the identity point), so that
    readings made up on a server would pass as the device's. Refused by name; nothing stored."""
    from attestation.encoding import b64url_encode
    from tests.attestation.test_signatures import BASE_POINT, SMALL_ORDER, _ed25519_pem

    ledger, http, auth = env
    body = {"id": "wh1-rfid-66", "alg": "EdDSA", "public_key": _ed25519_pem(SMALL_ORDER[0]), "kind": "rfid_inventory",
            "pop": b64url_encode(BASE_POINT + (1).to_bytes(32, "little"))}
    r = http.post("/v1/devices", json=body, headers=auth["operator"])
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "invalid_public_key" and "small order" in error["message"], error
    assert http.get("/v1/devices/wh1-rfid-66", headers=auth["operator"]).status_code == 404
