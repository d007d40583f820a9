"""COSE_Sign1 readings over real HTTP (SQLite and PostgreSQL, embedded EVM): ingest, chain, prove."""

from __future__ import annotations

import copy
import hashlib

import cbor2
import httpx
import pytest

from attestation.bundle import chain_query, verify_bundle
from attestation.encoding import b64url_decode, b64url_encode
from ledger.chain.client import ChainReader
from ledger.simulator import SimulatedDevice
from tests.api.conftest import bearer, register

def post_cose(http: httpx.Client, data: bytes, content_type: str = "application/cose") -> httpx.Response:
    return http.post("/v1/readings", content=data, headers={"Content-Type": content_type})


@pytest.mark.parametrize("alg", ["ES256", "ES256K", "EdDSA"])
def test_cose_reading_to_verified_proof(env, alg: str) -> None:  # type: ignore[no-untyped-def]
    ledger, http, operator, bank = env
    device = SimulatedDevice(f"wh1-cose-{alg.lower()}", "load_cell", alg=alg, lot="LOT-2026-0001")
    assert register(http, operator, device).status_code == 201

    first = device.reading({"weight_kg": 1000.0})  # JSON
    r = http.post("/v1/readings", json=first)
    assert r.status_code == 201, r.text
    first_id = r.json()["id"]

    data = device.cose_reading({"weight_kg": 1250.5}, unprotected={4: device.id.encode()})  # COSE, prev = first
    r = post_cose(http, data)
    assert (r.status_code, r.json()["status"]) == (201, "accepted"), r.text
    cose_id = r.json()["id"]
    assert cose_id == hashlib.sha256(cbor2.loads(data).value[2]).hexdigest()  # sha256 of the payload bstr
    r = post_cose(http, data)  # the identical reading again
    assert (r.status_code, r.json()["status"], r.json()["id"]) == (200, "duplicate", cose_id)
    r = http.post("/v1/readings", json={"cose": b64url_encode(data)})  # its JSON form is the same reading
    assert (r.status_code, r.json()["status"]) == (200, "duplicate")

    last = device.reading({"weight_kg": 1251.0})  # JSON again, prev = the COSE reading
    assert last["payload"]["prev"] == cose_id
    r = http.post("/v1/readings", json=last)
    assert r.status_code == 201
    last_id = r.json()["id"]

    stored = http.get(f"/v1/readings/{cose_id}", headers=bearer(bank)).json()
    assert stored["reading"] == {"cose": b64url_encode(data)} and stored["prev_mismatch"] is False
    assert b64url_decode(stored["reading"]["cose"]) == data  # the exact bytes received
    stored_last = http.get(f"/v1/readings/{last_id}", headers=bearer(bank)).json()
    assert stored_last["prev_mismatch"] is False and stored_last["reading"] == last
    assert first_id != cose_id

    ledger.anchorer.tick()
    bundle = http.get(f"/v1/readings/{cose_id}/proof", headers=bearer(bank)).json()
    assert bundle["reading"] == {"cose": b64url_encode(data)}
    assert bundle["digest"] == "0x" + cose_id and bundle["device"]["alg"] == alg
    report = verify_bundle(bundle, ChainReader(ledger.chain.w3).chain_facts(chain_query(bundle)))
    assert report.ok, report.as_dict()

    tampered = copy.deepcopy(bundle)
    forged = data.replace(b"\x63seq\x02", b"\x63seq\x05")  # seq 2 -> 5, still deterministic CBOR
    assert forged != data
    tampered["reading"] = {"cose": b64url_encode(forged)}
    failed = verify_bundle(tampered, ChainReader(ledger.chain.w3).chain_facts(chain_query(tampered))).failed
    assert failed[:2] == ["signature", "digest"]


def test_arrays_mix_json_and_cose(env) -> None:  # type: ignore[no-untyped-def]
    ledger, http, operator, bank = env
    device = SimulatedDevice("wh1-rfid-cose", "rfid_inventory", alg="EdDSA", lot="LOT-7")
    assert register(http, operator, device).status_code == 201
    readings = []
    for i in range(6):
        if i % 2:
            readings.append({"cose": b64url_encode(device.cose_reading({"count": 100 - i}))})
        else:
            readings.append(device.reading({"count": 100 - i}))
    bad_cbor = {"cose": b64url_encode(b"\xd2\x84\x41")}
    tampered = {"cose": b64url_encode(b64url_decode(readings[1]["cose"]).replace(b"\x18\x63", b"\x18\x62", 1))}  # count 99 -> 98
    r = http.post("/v1/readings", json=readings[:3] + [bad_cbor, tampered] + readings[3:])
    assert r.status_code == 200, r.text
    results = r.json()
    assert [x["status"] for x in results] == ["accepted"] * 3 + ["rejected"] * 2 + ["accepted"] * 3
    assert results[3]["code"] == "invalid_reading" and results[3]["message"]
    assert results[4]["code"] == "invalid_signature"
    ids = [x["id"] for x in results[:3] + results[5:]]
    for i, reading_id in enumerate(ids[1:], start=1):  # every reading chains to the one before it
        stored = http.get(f"/v1/readings/{reading_id}", headers=bearer(bank)).json()
        assert stored["prev_mismatch"] is False
        assert stored["reading"] == readings[i]
    ledger.anchorer.tick()
    chain = ChainReader(ledger.chain.w3)
    for reading_id in ids[:2]:
        bundle = http.get(f"/v1/readings/{reading_id}/proof", headers=bearer(bank)).json()
        assert verify_bundle(bundle, chain.chain_facts(chain_query(bundle))).ok


def test_cose_errors(env) -> None:  # type: ignore[no-untyped-def]
    _, http, operator, _ = env
    device = SimulatedDevice("wh1-scale-cose-err", "load_cell", alg="ES256")
    assert register(http, operator, device).status_code == 201

    for body in [b"\xd2\x84\x41", b"not cbor at all", b"\x00", b"\xd2\x84\x43\xa1\x01\x26\xa0\xf6\x40"]:
        r = post_cose(http, body)
        assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_reading"), (body, r.text)
        assert r.json()["error"]["message"]

    data = device.cose_reading({"weight_kg": 1.0})
    message = cbor2.loads(data).value
    payload = message[2]
    loose = payload.replace(b"\x63seq\x01", b"\x63seq\x18\x01")  # seq 1 in a longer form
    resigned = cbor2.dumps(cbor2.CBORTag(18, [message[0], {}, loose, device.sign(cbor2.dumps(["Signature1", message[0], b"", loose]))]))
    r = post_cose(http, resigned)
    assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_reading")
    assert "deterministic" in r.json()["error"]["message"]

    forged = data[:-64] + bytes(64)  # a signature of zeros
    r = post_cose(http, forged)
    assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_signature")

    # a media-type parameter is fine; the reading itself then goes through
    r = post_cose(http, data, 'application/cose; cose-type="cose-sign1"')
    assert r.status_code == 201, r.text

    stranger = SimulatedDevice("wh1-cose-ghost", "load_cell")
    r = post_cose(http, stranger.cose_reading({"weight_kg": 1.0}))
    assert (r.status_code, r.json()["error"]["code"]) == (404, "unknown_device")

    # COSE bytes under another content type are handled as before: not a JSON reading
    r = post_cose(http, device.cose_reading({"weight_kg": 2.0}), "application/octet-stream")
    assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_reading")
    r = post_cose(http, device.cose_reading({"weight_kg": 2.0}), "application/json")
    assert r.status_code == 400 and r.json()["error"]["message"]  # not JSON (FastAPI: not even UTF-8)


def test_openapi_documents_the_cose_body(env) -> None:  # type: ignore[no-untyped-def]
    _, http, _, _ = env
    spec = http.get("/openapi.json").json()
    content = spec["paths"]["/v1/readings"]["post"]["requestBody"]["content"]
    assert {"application/json", "application/cose"} <= set(content)
