"""Real HTTP through the FastAPI app, on SQLite and PostgreSQL, with an embedded EVM."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone

import pytest

from attestation.bundle import chain_query, verify_bundle
from ledger.chain.client import ChainReader
from ledger.simulator import SimulatedDevice
from tests.api.conftest import bearer, register


def test_healthz(env) -> None:  # type: ignore[no-untyped-def]
    ledger, http, _, _ = env
    body = http.get("/healthz").json()
    assert body["status"] == "ok"
    assert body["db"] in ("sqlite", "postgresql")
    assert set(body["chain"]["contracts"]) == {"DeviceRegistry", "ReadingAnchor", "CollateralRegistry"}
    assert body["chain"]["id"] == ledger.chain.client.chain_id


@pytest.mark.parametrize("alg", ["ES256", "ES256K", "EdDSA"])
def test_reading_to_verified_proof(env, alg: str) -> None:  # type: ignore[no-untyped-def]
    ledger, http, operator, bank = env
    device = SimulatedDevice(f"wh1-scale-{alg.lower()}", "load_cell", alg=alg, lot="LOT-2026-0001")
    r = register(http, operator, device)
    assert r.status_code == 201, r.text
    assert r.json()["tx_hash"].startswith("0x")

    envelope = device.reading({"weight_kg": 1250.5})
    r = http.post("/v1/readings", json=envelope)
    assert r.status_code == 201, r.text
    reading_id = r.json()["id"]
    assert r.json()["status"] == "accepted"

    r = http.post("/v1/readings", json=envelope)  # the identical reading again
    assert (r.status_code, r.json()["status"]) == (200, "duplicate")

    stored = http.get(f"/v1/readings/{reading_id}", headers=bearer(bank)).json()
    assert stored["reading"] == envelope

    r = http.get(f"/v1/readings/{reading_id}/proof", headers=bearer(bank))
    assert r.status_code == 409 and r.json()["error"]["code"] == "proof_pending"
    assert int(r.headers["Retry-After"]) >= 1

    ledger.anchorer.tick()
    bundle = http.get(f"/v1/readings/{reading_id}/proof", headers=bearer(bank)).json()
    assert bundle["format"] == "pledgeledger.proof/1" and bundle["reading"] == envelope
    assert bundle["anchor"]["status"] == "final" and bundle["anchor"]["index"] == 0  # a dev chain: final once included

    facts = ChainReader(ledger.chain.w3).chain_facts(chain_query(bundle))
    report = verify_bundle(bundle, facts)
    assert report.ok, report.as_dict()

    tampered = copy.deepcopy(bundle)
    tampered["reading"]["payload"]["data"]["weight_kg"] = 1250.0
    assert not verify_bundle(tampered, ChainReader(ledger.chain.w3).chain_facts(chain_query(tampered))).ok


def test_batch_post_and_anchoring_many(env) -> None:  # type: ignore[no-untyped-def]
    ledger, http, operator, bank = env
    device = SimulatedDevice("wh1-rfid-01", "rfid_inventory", lot="LOT-7")
    assert register(http, operator, device).status_code == 201
    good = [device.reading({"count": 100 - i}) for i in range(20)]
    bad = copy.deepcopy(good[5])
    bad["payload"]["data"]["count"] = 1  # tampered after signing
    r = http.post("/v1/readings", json=good[:10] + [bad] + good[10:])
    assert r.status_code == 200
    results = r.json()
    assert [x["status"] for x in results].count("accepted") == 20
    assert results[10] == {"id": results[10]["id"], "status": "rejected", "code": "invalid_signature",
                           "message": results[10]["message"]}
    ledger.anchorer.tick()
    chain = ChainReader(ledger.chain.w3)
    for x in [results[0], results[-1]]:
        bundle = http.get(f"/v1/readings/{x['id']}/proof", headers=bearer(bank)).json()
        assert verify_bundle(bundle, chain.chain_facts(chain_query(bundle))).ok
    # next batch links to the previous checkpoint
    more = device.reading({"count": 1})
    assert http.post("/v1/readings", json=more).status_code == 201
    ledger.anchorer.tick()
    bundle = http.get(f"/v1/readings/{http.post('/v1/readings', json=more).json()['id']}/proof", headers=bearer(bank)).json()
    assert bundle["anchor"]["index"] == 1
    assert verify_bundle(bundle, chain.chain_facts(chain_query(bundle))).ok


def test_sequencing_and_replay(env) -> None:  # type: ignore[no-untyped-def]
    """Fraud case 10: replayed, reordered and rolled-back sequence numbers; backdated time."""
    _, http, operator, _ = env
    device = SimulatedDevice("wh1-scale-seq", "load_cell")
    assert register(http, operator, device).status_code == 201
    first = device.reading({"weight_kg": 10.0})
    second = device.reading({"weight_kg": 11.0}, seq_step=3)  # secure-element counters may skip
    assert http.post("/v1/readings", json=first).status_code == 201
    assert http.post("/v1/readings", json=second).status_code == 201

    device.seq = second["payload"]["seq"] - 1  # same seq, other content: a replay
    replay = device.reading({"weight_kg": 99.0})
    r = http.post("/v1/readings", json=replay)
    assert (r.status_code, r.json()["error"]["code"]) == (409, "replayed")

    device.seq = 1  # rolled back below the last seq
    r = http.post("/v1/readings", json=device.reading({"weight_kg": 12.0}))
    assert (r.status_code, r.json()["error"]["code"]) == (409, "sequence_regressed")

    device.seq = 100
    past = datetime.now(timezone.utc) - timedelta(hours=1)
    r = http.post("/v1/readings", json=device.reading({"weight_kg": 12.0}, ts=past))
    assert (r.status_code, r.json()["error"]["code"]) in {(409, "timestamp_regressed"), (422, "key_not_valid")}

    future = datetime.now(timezone.utc) + timedelta(hours=1)
    r = http.post("/v1/readings", json=device.reading({"weight_kg": 12.0}, ts=future))
    assert (r.status_code, r.json()["error"]["code"]) == (422, "timestamp_in_future")


def test_unregistered_and_forged(env) -> None:  # type: ignore[no-untyped-def]
    """Fraud case 3: evidence signed by an unregistered key, or by a key other than the registered one."""
    _, http, operator, _ = env
    stranger = SimulatedDevice("wh1-ghost", "load_cell")
    r = http.post("/v1/readings", json=stranger.reading({"weight_kg": 1.0}))
    assert (r.status_code, r.json()["error"]["code"]) == (404, "unknown_device")

    device = SimulatedDevice("wh1-scale-x", "load_cell")
    assert register(http, operator, device).status_code == 201
    impostor = SimulatedDevice("wh1-scale-x", "load_cell")  # same id, other key
    r = http.post("/v1/readings", json=impostor.reading({"weight_kg": 1.0}))
    assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_signature")


def test_registration_errors(env) -> None:  # type: ignore[no-untyped-def]
    _, http, operator, bank = env
    device = SimulatedDevice("wh1-scale-r", "load_cell")
    body = device.registration()
    r = http.post("/v1/devices", json=body)
    assert (r.status_code, r.json()["error"]["code"]) == (401, "unauthorized")
    r = http.post("/v1/devices", json=body, headers={"Authorization": "Bearer plk_nope"})
    assert r.status_code == 401
    r = http.post("/v1/devices", json=body, headers=bearer(bank))
    assert (r.status_code, r.json()["error"]["code"]) == (403, "role_forbidden")
    forged = dict(body, pop=SimulatedDevice("other", "load_cell").registration()["pop"])
    r = http.post("/v1/devices", json=forged, headers=bearer(operator))
    assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_signature")
    assert "pop" in r.json()["error"]["message"]
    r = http.post("/v1/devices", json=dict(body, kind="teleporter"), headers=bearer(operator))
    assert (r.status_code, r.json()["error"]["code"]) == (422, "unknown_kind")
    assert http.post("/v1/devices", json=body, headers=bearer(operator)).status_code == 201
    r = http.post("/v1/devices", json=body, headers=bearer(operator))
    assert (r.status_code, r.json()["error"]["code"]) == (409, "device_exists")


@pytest.mark.parametrize(
    "content,status,code",
    [
        (b"{not json", 400, "invalid_json"),
        (b"\xff\xfe{}", 400, "invalid_json"),
        (b'"a string"', 422, "invalid_reading"),
        (b"[1, 2]", 200, None),
        (b'{"payload": {}}', 422, "invalid_reading"),
    ],
)
def test_bad_input_gets_the_error_body(env, content: bytes, status: int, code: str | None) -> None:  # type: ignore[no-untyped-def]
    _, http, _, _ = env
    r = http.post("/v1/readings", content=content, headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text
    if code:
        assert r.json()["error"]["code"] == code and r.json()["error"]["message"]
    else:
        assert [x["status"] for x in r.json()] == ["rejected", "rejected"]


def test_limits_and_unknown_routes(env) -> None:  # type: ignore[no-untyped-def]
    _, http, _, bank = env
    r = http.post("/v1/readings", json=[{}] * 1001)
    assert (r.status_code, r.json()["error"]["code"]) == (422, "too_many_readings")
    r = http.post("/v1/readings", content=b"[" + b"0," * 3_000_000 + b"0]", headers={"Content-Type": "application/json"})
    assert (r.status_code, r.json()["error"]["code"]) == (413, "request_too_large")
    r = http.get("/v1/nothing")
    assert (r.status_code, r.json()["error"]["code"]) == (404, "not_found")
    r = http.get("/v1/readings/" + "0" * 64, headers=bearer(bank))
    assert (r.status_code, r.json()["error"]["code"]) == (404, "reading_not_found")
    r = http.get("/v1/readings/" + "0" * 64)
    assert r.status_code == 401
