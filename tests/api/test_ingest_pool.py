"""``POST /v1/readings`` batches through the ingestion pool (``PLEDGELEDGER_INGEST_PROCESSES``):
worker processes decide exactly what the serving process decides, and a dead worker costs one
503, not the service."""

from __future__ import annotations

import copy
import os
import signal
import time

import httpx
import pytest

from api.main import create_app
from attestation.encoding import b64url_encode
from ledger.simulator import SimulatedDevice
from tests.api.conftest import bearer, register
from tests.conftest import LiveServer


@pytest.fixture
def pooled(db_url, ledger_factory):  # type: ignore[no-untyped-def]
    ledger = ledger_factory(db_url, ingest_processes=2)
    assert ledger.ingest_pool is not None
    operator = ledger.create_organisation(name="Warehouse One", role="operator")
    bank = ledger.create_organisation(name="Bank A", role="bank")
    with LiveServer(create_app(ledger=ledger)) as server, httpx.Client(base_url=server.url, timeout=60) as http:
        yield ledger, http, operator, bank


def test_a_pooled_batch_is_decided_as_one_process_decides_it(pooled) -> None:  # type: ignore[no-untyped-def]
    """All three algorithms and both envelopes; forged, replayed, regressed, duplicate and unknown readings
    (fraud cases 3, 10, 13) get the same codes as without the pool, and nothing of them is stored."""
    ledger, http, operator, bank = pooled
    devices = [SimulatedDevice(f"wh1-pool-{alg.lower()}", "load_cell", alg=alg, lot="LOT-P") for alg in ("ES256", "ES256K", "EdDSA")]
    for device in devices:
        assert register(http, operator, device).status_code == 201
    es, k1, ed = devices
    first = [d.reading({"weight_kg": 1000.0 + i}) for i, d in enumerate(devices)]
    cose = {"cose": b64url_encode(ed.cose_reading({"weight_kg": 999.5}))}
    forged = copy.deepcopy(es.reading({"weight_kg": 10.0}))
    forged["payload"]["data"]["weight_kg"] = 9.0  # changed after signing
    k1.seq -= 1
    replay = k1.reading({"weight_kg": 1.0})  # k1's seq again, other content
    k1.seq = 0
    regressed = k1.reading({"weight_kg": 2.0}, seq_step=0)
    stranger = SimulatedDevice("wh1-pool-unknown", "load_cell").reading({"weight_kg": 5.0})
    batch = [*first, cose, forged, replay, regressed, first[0], stranger]

    r = http.post("/v1/readings", json=batch)
    assert r.status_code == 200, r.text
    got = [(x["status"], x["code"]) for x in r.json()]
    assert got == [
        ("accepted", None), ("accepted", None), ("accepted", None), ("accepted", None),
        ("rejected", "invalid_signature"), ("rejected", "replayed"), ("rejected", "sequence_regressed"),
        ("duplicate", None), ("rejected", "unknown_device"),
    ]  # fmt: skip
    for result in r.json()[:4]:
        stored = http.get(f"/v1/readings/{result['id']}", headers=bearer(bank))
        assert stored.status_code == 200, stored.text
    for result in r.json()[4:7]:
        assert http.get(f"/v1/readings/{result['id']}", headers=bearer(bank)).status_code == 404

    # the same batch again: what was stored is a duplicate, the rest is refused again
    again = http.post("/v1/readings", json=batch).json()
    assert [x["status"] for x in again[:4]] == ["duplicate"] * 4


def test_a_pooled_body_that_is_not_a_batch_gets_the_error_body(pooled) -> None:  # type: ignore[no-untyped-def]
    ledger, http, _, _ = pooled
    r = http.post("/v1/readings", content=b"[1, 2", headers={"Content-Type": "application/json"})
    assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_json")
    too_many = [{}] * (ledger.settings.max_batch_request + 1)
    r = http.post("/v1/readings", json=too_many)
    assert (r.status_code, r.json()["error"]["code"]) == (422, "too_many_readings")
    assert "at most 1000" in r.json()["error"]["message"]


def test_a_dead_worker_costs_one_503_and_the_pool_comes_back(pooled) -> None:  # type: ignore[no-untyped-def]
    ledger, http, operator, bank = pooled
    device = SimulatedDevice("wh1-pool-kill", "rfid_inventory")
    assert register(http, operator, device).status_code == 201
    first = http.post("/v1/readings", json=[device.reading({"count": 10})])
    assert first.json()[0]["status"] == "accepted"

    workers = ledger.ingest_pool.pids()
    assert len(workers) == 2
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)
    second = [device.reading({"count": 11})]
    lost = http.post("/v1/readings", json=second)
    assert (lost.status_code, lost.json()["error"]["code"]) == (503, "ingest_worker_lost"), lost.text
    assert lost.headers["Retry-After"] == "1"
    assert "send the same batch again" in lost.json()["error"]["message"]

    retry = http.post("/v1/readings", json=second)  # as the message says
    assert retry.status_code == 200 and retry.json()[0]["status"] == "accepted", retry.text
    assert set(ledger.ingest_pool.pids()).isdisjoint(workers)
    assert http.get(f"/v1/readings/{first.json()[0]['id']}", headers=bearer(bank)).status_code == 200
