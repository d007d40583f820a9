"""Fraud cases 10 and 11 over HTTP: withheld readings and a cloned key surface as gaps."""

from __future__ import annotations

import copy

import httpx
import pytest

from api.main import create_app
from attestation.readings import parse_reading
from ledger.simulator import SimulatedDevice
from tests.conftest import LiveServer


@pytest.fixture
def env(db_url, ledger_factory):  # type: ignore[no-untyped-def]
    ledger = ledger_factory(db_url)
    operator = ledger.create_organisation(name="wh", role="operator")
    auditor = ledger.create_organisation(name="audit", role="auditor")
    with LiveServer(create_app(ledger=ledger)) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        yield http, {"Authorization": f"Bearer {operator.api_key}"}, {"Authorization": f"Bearer {auditor.api_key}"}


def test_withheld_reading_is_a_gap_but_the_authentic_reading_is_stored(env) -> None:  # type: ignore[no-untyped-def]
    http, op, auditor = env
    device = SimulatedDevice("wh1-scale-gap", "load_cell", lot="LOT-G")
    assert http.post("/v1/devices", json=device.registration(), headers=op).status_code == 201
    ids = [http.post("/v1/readings", json=device.reading({"weight_kg": 900.0})).json()["id"]]
    withheld = device.reading({"weight_kg": 450.0})  # the embarrassing reading never arrives
    r = http.post("/v1/readings", json=device.reading({"weight_kg": 900.0}))
    assert r.status_code == 201  # authentic, so stored...
    after = r.json()["id"]
    gaps = http.get(f"/v1/devices/{device.id}/gaps", headers=auditor).json()
    assert len(gaps) == 1  # ...but the hole in the chain is on record
    assert gaps[0]["kind"] == "prev_mismatch" and gaps[0]["reading"] == after
    assert gaps[0]["expected_prev"] == ids[0]
    assert gaps[0]["claimed_prev"] == parse_reading(withheld).id  # it names the reading we never saw
    assert http.get(f"/v1/readings/{after}", headers=auditor).json()["prev_mismatch"] is True

    # the withheld reading arriving late cannot fill the hole: its seq is behind
    r = http.post("/v1/readings", json=withheld)
    assert (r.status_code, r.json()["error"]["code"]) == (409, "sequence_regressed")


def test_cloned_key_reporting_from_two_places_is_a_fork(env) -> None:  # type: ignore[no-untyped-def]
    http, op, auditor = env
    device = SimulatedDevice("wh1-scale-clone", "load_cell")
    assert http.post("/v1/devices", json=device.registration(), headers=op).status_code == 201
    base = http.post("/v1/readings", json=device.reading({"weight_kg": 10.0})).json()["id"]
    clone = copy.copy(device)  # same key, same chain state, somewhere else
    assert http.post("/v1/readings", json=device.reading({"weight_kg": 10.0})).status_code == 201
    clone.seq += 5
    r = http.post("/v1/readings", json=clone.reading({"weight_kg": 10.0}))
    assert r.status_code == 201
    gaps = http.get(f"/v1/devices/{device.id}/gaps", headers=auditor).json()
    assert [g["kind"] for g in gaps] == ["fork"] and gaps[0]["claimed_prev"] == base


def test_reboot_restarts_the_chain_and_is_recorded(env) -> None:  # type: ignore[no-untyped-def]
    http, op, auditor = env
    device = SimulatedDevice("wh1-scale-boot", "load_cell")
    assert http.post("/v1/devices", json=device.registration(), headers=op).status_code == 201
    assert http.post("/v1/readings", json=device.reading({"weight_kg": 1.0})).status_code == 201
    assert http.post("/v1/readings", json=device.reading({"weight_kg": 1.0})).status_code == 201
    device.prev = None  # power loss: the counter skips, the chain restarts
    r = http.post("/v1/readings", json=device.reading({"weight_kg": 1.0}, seq_step=7))
    assert r.status_code == 201
    gaps = http.get(f"/v1/devices/{device.id}/gaps", headers=auditor).json()
    assert [g["kind"] for g in gaps] == ["restart"]
    assert http.get(f"/v1/readings/{r.json()['id']}", headers=auditor).json()["prev_mismatch"] is False
    assert http.post("/v1/readings", json=device.reading({"weight_kg": 1.0})).status_code == 201
    assert len(http.get(f"/v1/devices/{device.id}/gaps", headers=auditor).json()) == 1
