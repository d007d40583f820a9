"""Issue 6 acceptance, from outside: the service running as `serve` runs it (anchoring, supervision and
webhook loops in the background), devices and parties over real HTTP, webhooks to real receivers that
check the HMAC with their own code, the freeze read back from the chain."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_utils import keccak

from api.main import create_app
from ledger.chain.collateral import Status, identifier_hash
from ledger.service import Ledger
from ledger.settings import Settings
from ledger.simulator import SimulatedDevice
from tests.api.test_webhooks import Receiver
from tests.conftest import LiveServer
from tests.ledger.lotworld import World, fast_chain, make_world

INTERVAL_S = 1.0  # the anchoring interval of this service
BLOCK_S = 1.0  # a block on the dev chain is mined at once; this is the allowance for a loaded test machine


@pytest.fixture
def service(db_url: str, tmp_path: Path) -> Iterator[tuple[World, httpx.Client]]:
    settings = Settings(data_dir=tmp_path / "data", db_url=db_url, chain=fast_chain(), batch_interval_s=INTERVAL_S,
                        supervision_sweep_s=0.5)  # fmt: skip
    ledger = Ledger.open(settings, start_anchoring=True)
    try:
        world = make_world(ledger)
        with LiveServer(create_app(ledger=ledger)) as server, httpx.Client(base_url=server.url, timeout=30) as http:
            yield world, http
    finally:
        ledger.close()


@pytest.fixture
def receivers() -> Iterator[dict[str, Receiver]]:
    made = {name: Receiver() for name in ("bank", "insurer")}
    yield made
    for r in made.values():
        r.close()


def auth(world: World, name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {world.api_keys[name]}"}


def subscribe(world: World, http: httpx.Client, name: str, receiver: Receiver, events: list[str]) -> str:
    r = http.post("/v1/webhooks", json={"url": receiver.url, "events": events}, headers=auth(world, name))
    assert r.status_code == 201, r.text
    return r.json()["secret"]


def device(world: World, http: httpx.Client, device_id: str, kind: str, lot: str) -> SimulatedDevice:
    d = SimulatedDevice(device_id, kind, lot=lot)
    r = http.post("/v1/devices", json=d.registration(), headers=auth(world, "warehouse"))
    assert r.status_code == 201, r.text
    return d


def post(http: httpx.Client, reading: dict[str, Any]) -> tuple[str, float]:
    r = http.post("/v1/readings", json=reading)
    assert r.status_code == 201, r.text
    return r.json()["id"], time.monotonic()


def signed_event(receiver: Receiver, secret: str, event: str, timeout: float = 15.0) -> dict[str, Any]:
    """The first delivery of ``event``, after checking its HMAC-SHA256 independently."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for call in list(receiver.calls):
            if call["headers"]["X-Pledgeledger-Event"] == event:
                expected = "sha256=" + hmac.new(secret.encode(), call["body"], hashlib.sha256).hexdigest()
                assert hmac.compare_digest(call["headers"]["X-Pledgeledger-Signature"], expected)
                body = json.loads(call["body"])
                assert body["event"] == event and body["id"] == call["headers"]["X-Pledgeledger-Delivery"]
                return body
        time.sleep(0.05)
    raise AssertionError(f"no {event} delivered; got {[c['headers'].get('X-Pledgeledger-Event') for c in receiver.calls]}")


def frozen_at(world: World, lot_id: str, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if world.ledger.collateral.lot(identifier_hash(lot_id)).status == Status.FROZEN:
            return time.monotonic()
        time.sleep(0.02)
    raise AssertionError(f"lot {lot_id} not frozen within {timeout} s")


def test_a_ten_percent_drop_freezes_within_one_interval_and_the_bank_hears_it(service, receivers) -> None:  # type: ignore[no-untyped-def]
    world, http = service
    secret = subscribe(world, http, "bank", receivers["bank"], ["alert.raised", "lot.frozen"])
    scale = device(world, http, "ACC-scale", "load_cell", "LOT-ACC")
    world.lot("LOT-ACC", devices=["ACC-scale"])
    baseline, _ = post(http, scale.reading({"weight_kg": 25_000.0}))
    world.pledge("LOT-ACC", quantity=10_000)
    post(http, scale.reading({"weight_kg": 24_990.0}))
    time.sleep(INTERVAL_S)
    assert world.ledger.collateral.lot(identifier_hash("LOT-ACC")).status == Status.PLEDGED

    drop, accepted = post(http, scale.reading({"weight_kg": 22_500.0}))  # 10% gone, no outbound action
    frozen = frozen_at(world, "LOT-ACC", timeout=INTERVAL_S + BLOCK_S)
    assert frozen - accepted <= INTERVAL_S + BLOCK_S

    raised = signed_event(receivers["bank"], secret, "alert.raised")
    alert = raised["data"]["alert"]
    assert (alert["lot"], alert["rule"], alert["severity"]) == ("LOT-ACC", "weight_drop", "critical")
    assert sorted(alert["readings"]) == sorted([baseline, drop])
    assert alert["reason"] == "0x" + keccak(b"".join(sorted(bytes.fromhex(i) for i in alert["readings"]))).hex()
    frozen_body = signed_event(receivers["bank"], secret, "lot.frozen")["data"]
    assert frozen_body["alert"] == alert["id"] and frozen_body["reason"] == alert["reason"] and frozen_body["tx_hash"]

    # the bank sees it over the API, with the evidence and a proof link for each reading
    [listed] = http.get("/v1/alerts", headers=auth(world, "bank")).json()
    assert listed["id"] == alert["id"] and listed["freeze"]["status"] == "confirmed"
    assert {r["id"]: r["proof"] for r in listed["readings"]} == {i: f"/v1/readings/{i}/proof" for i in alert["readings"]}
    assert http.get("/v1/lots/LOT-ACC/alerts", headers=auth(world, "bank")).json()[0]["id"] == alert["id"]
    assert http.get("/v1/alerts", headers=auth(world, "insurer")).json() == []  # not its lot
    r = http.get("/v1/lots/LOT-ACC/alerts", headers=auth(world, "insurer"))
    assert r.status_code == 404 and r.json()["error"]["code"] == "lot_not_found"
    r = http.post(f"/v1/alerts/{alert['id']}/acknowledge", headers=auth(world, "bank"))
    assert r.status_code == 409 and r.json()["error"]["code"] == "unfreeze_required"
    deadline = time.monotonic() + 15
    while (proof := http.get(listed["readings"][0]["proof"], headers=auth(world, "bank"))).status_code == 409 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proof.status_code == 200 and proof.json()["digest"] == "0x" + listed["readings"][0]["id"]


def test_a_silent_device_raises_an_alert_after_its_heartbeat_interval(service, receivers) -> None:  # type: ignore[no-untyped-def]
    world, http = service
    secret = subscribe(world, http, "bank", receivers["bank"], ["alert.raised"])
    r = http.put("/v1/rules", json={"heartbeat_interval_s": 2}, headers=auth(world, "warehouse"))
    assert r.status_code == 200 and r.json()["effective"]["heartbeat_interval_s"] == 2
    scale = device(world, http, "HB-scale", "load_cell", "LOT-HB")
    world.lot("LOT-HB", devices=["HB-scale"])
    last, heard = post(http, scale.reading({"weight_kg": 1_000.0}))
    world.pledge("LOT-HB", quantity=10_000)
    body = signed_event(receivers["bank"], secret, "alert.raised", timeout=15)
    assert time.monotonic() - heard >= 2
    alert = body["data"]["alert"]
    assert (alert["rule"], alert["device"], alert["readings"]) == ("device_silent", "HB-scale", [last])
    frozen_at(world, "LOT-HB", timeout=5)


def test_a_smoke_alarm_reaches_the_insurer(service, receivers) -> None:  # type: ignore[no-untyped-def]
    world, http = service
    secret = subscribe(world, http, "insurer", receivers["insurer"], ["alert.raised", "lot.frozen"])
    alarm = device(world, http, "FIRE-smoke", "smoke_alarm", "LOT-FIRE")
    world.lot("LOT-FIRE", devices=["FIRE-smoke"], insured=True)
    world.pledge("LOT-FIRE", quantity=10_000)
    post(http, alarm.reading({"alarm": False}))
    fire, _ = post(http, alarm.reading({"alarm": True}))
    alert = signed_event(receivers["insurer"], secret, "alert.raised")["data"]["alert"]
    assert (alert["rule"], alert["readings"]) == ("smoke_alarm", [fire])
    signed_event(receivers["insurer"], secret, "lot.frozen")
    [event] = http.get("/v1/insurer/events", headers=auth(world, "insurer")).json()
    assert (event["event"], event["lot"], event["readings"][0]["data"]) == ("fire", "LOT-FIRE", {"alarm": True})
    assert event["readings"][0]["proof"] == f"/v1/readings/{fire}/proof"
    r = http.get("/v1/insurer/events", headers=auth(world, "bank"))
    assert r.status_code == 403 and r.json()["error"]["code"] == "role_forbidden"


def test_rule_thresholds_belong_to_the_warehouse(service) -> None:  # type: ignore[no-untyped-def]
    world, http = service
    world.device("CFG-scale", "load_cell", "LOT-CFG")
    world.lot("LOT-CFG", devices=["CFG-scale"])
    r = http.put("/v1/rules", json={"weight_tolerance_pct": 150}, headers=auth(world, "warehouse"))
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
    r = http.put("/v1/rules", json={"weight_tolerance_pct": 3.5}, headers=auth(world, "bank"))
    assert r.status_code == 403 and r.json()["error"]["code"] == "role_forbidden"
    assert http.put("/v1/rules", json={"weight_tolerance_pct": 3.5}, headers=auth(world, "warehouse")).status_code == 200
    fence = {"geofence": {"lat": 31.3, "lon": 120.6, "radius_m": 150}, "heartbeat_interval_s": 120}
    r = http.put("/v1/lots/LOT-CFG/rules", json=fence, headers=auth(world, "warehouse"))
    assert r.status_code == 200, r.text
    view = http.get("/v1/lots/LOT-CFG/rules", headers=auth(world, "enterprise")).json()
    assert view["effective"]["weight_tolerance_pct"] == 3.5 and view["effective"]["geofence"]["radius_m"] == 150
    assert view["lot_overrides"] == fence and view["defaults"]["weight_tolerance_pct"] == 2.0
    r = http.put("/v1/lots/LOT-CFG/rules", json={"temp_min_c": 60}, headers=auth(world, "warehouse"))
    assert r.status_code == 422 and r.json()["error"]["code"] in ("invalid_request", "invalid_rules")
    assert http.get("/v1/lots/LOT-CFG/rules", headers=auth(world, "insurer")).status_code == 404
