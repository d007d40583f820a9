"""Production metrics over real HTTP: signed meter and machine readings anchored on the embedded
chain, answers re-verified by ``pledgeledger verify`` through JSON-RPC to that chain."""

from __future__ import annotations

import ast
import json
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner
from web3 import Web3
from eth_tester.exceptions import TransactionFailed
from web3.exceptions import Web3RPCError

from api.cli import app as cli_app
from api.main import create_app
from ledger.simulator import SimulatedDevice
from tests.api.conftest import bearer, register
from tests.conftest import LiveServer

UTC = timezone.utc
#: Monthly kWh of the meter, from M-12 to M (M: last month).
MONTHLY = [100, 120, 90, 150, 150, 80, 100, 100, 100, 100, 100, 100, 135]


class JsonRpcBridge:
    """The embedded chain's web3 provider behind a real JSON-RPC endpoint on loopback, so that
    ``pledgeledger verify --rpc URL`` reads it over HTTP as it would read any node."""

    def __init__(self, w3: Web3, sender: str) -> None:

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                params = request.get("params", [])
                if request["method"] in ("eth_call", "eth_estimateGas") and "from" not in params[0]:
                    params[0]["from"] = sender  # a node's default sender; eth-tester wants one named
                try:
                    answer = {"result": w3.manager.request_blocking(request["method"], params)}
                except TransactionFailed as exc:  # a revert: eth-tester prints its data as a bytes literal; a node sends it as hex
                    data = str(exc.args[0]).removeprefix("execution reverted: ")
                    raw = ast.literal_eval(data) if data.startswith("b'") else b""
                    answer = {"error": {"code": 3, "message": "execution reverted", "data": "0x" + raw.hex()}}
                except Web3RPCError as exc:
                    answer = {"error": exc.rpc_response["error"] if exc.rpc_response else {"code": -32000, "message": str(exc)}}
                except Exception as exc:  # a revert or a validation error of eth-tester
                    answer = {"error": {"code": -32000, "message": str(exc)}}
                body = Web3.to_json({"jsonrpc": "2.0", "id": request.get("id"), **answer})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> JsonRpcBridge:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def month_start(moment: datetime, months: int = 0) -> datetime:
    n = moment.year * 12 + moment.month - 1 + months
    return datetime(n // 12, n % 12 + 1, 1, tzinfo=UTC)


@pytest.fixture
def plant(db_url, ledger_factory) -> Iterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    """A meter with fourteen months of readings and a press with a day's, anchored in several batches."""
    # keys valid from 500 days before registration, so readings of the past year verify
    ledger = ledger_factory(db_url, max_future_skew_s=500 * 86400)
    orgs = {role: ledger.create_organisation(name=f"Plant {role}", role=role) for role in ("operator", "bank", "auditor", "insurer")}
    orgs["other"] = ledger.create_organisation(name="Another warehouse", role="operator")
    now = datetime.now(UTC)
    this_month = month_start(now)
    meter, press = SimulatedDevice("plant-meter-1", "power_meter"), SimulatedDevice("press-1", "equipment_state")
    with LiveServer(create_app(ledger=ledger)) as server, httpx.Client(base_url=server.url, timeout=60) as http, \
            JsonRpcBridge(ledger.chain.w3, ledger.chain.client.account.address) as rpc:
        for device in (meter, press):
            assert register(http, orgs["operator"], device).status_code == 201
        readings, total = [meter.reading({"energy_kwh": 5000.0}, ts=month_start(now, -13))], 5000.0
        for i, used in enumerate(MONTHLY):
            start = month_start(now, -13 + i)
            if i == len(MONTHLY) - 1:  # last month: a reading mid-month too
                readings.append(meter.reading({"energy_kwh": total + used / 2, "power_kw": 0.2}, ts=start + timedelta(days=10)))
            total += used
            readings.append(meter.reading({"energy_kwh": total}, ts=month_start(now, -12 + i)))
        # batch 0: nine readings (a multiproof of several), then one batch per reading
        chunks = [readings[:9]] + [[r] for r in readings[9:]]
        for chunk in chunks:
            assert all(r["status"] == "accepted" for r in http.post("/v1/readings", json=chunk).json())
            ledger.anchorer.tick()
        yesterday = (now - timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        states = [(0, False), (8, True), (12, False), (22, True), (26, False)]
        posted = http.post("/v1/readings", json=[press.reading({"running": running}, ts=yesterday - timedelta(days=1) + timedelta(hours=h))
                                                  for h, running in states])
        assert all(r["status"] == "accepted" for r in posted.json())
        ledger.anchorer.tick()
        # a reading of this month not anchored yet
        late = meter.reading({"energy_kwh": total + 1}, ts=now - timedelta(seconds=5))
        assert http.post("/v1/readings", json=late).status_code == 201
        yield {"ledger": ledger, "http": http, "orgs": orgs, "rpc": rpc.url, "month": month_start(now, -1),
               "this_month": this_month, "late": late, "day": yesterday - timedelta(days=1), "batches": len(chunks)}


def verify_cli(path: Path, rpc: str, *extra: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli_app, ["verify", str(path), "--rpc", rpc, *extra])


def test_utilisation_answer_verifies_against_the_chain(plant, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    http, orgs = plant["http"], plant["orgs"]
    month = plant["month"].strftime("%Y-%m")
    r = http.get("/v1/production/utilisation", params={"device": "plant-meter-1", "month": month}, headers=bearer(orgs["bank"]))
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["format"] == "pledgeledger.production/1"
    assert answer["query"] == {"metric": "utilisation", "device": "plant-meter-1", "month": month}
    result = answer["result"]
    assert [p["kwh"] for p in result["periods"]] == [f"{v}.000" for v in MONTHLY]
    assert (result["kwh"], result["utilisation"], result["yoy_growth"]) == ("135.000", "0.9000", "0.3500")
    assert result["peak_prior_kwh"] == "150.000" and result["complete"], result
    assert answer["pending"] == []  # the reading of this month is past the window's closing reading
    groups = answer["evidence"]
    assert len(groups) == plant["batches"] and len(groups[0]["readings"]) == 9 and all(g["device"] == "plant-meter-1" for g in groups)
    assert all(g["anchor"]["status"] in ("included", "final") for g in groups)

    path = tmp_path / "utilisation.json"
    path.write_text(json.dumps(answer))
    run = verify_cli(path, plant["rpc"], "--json")
    assert run.exit_code == 0, run.output
    report = json.loads(run.output)
    assert report["ok"] and [c["name"] for c in report["checks"]] == ["format", "evidence", "readings", "computation"]
    assert "utilisation 0.9000" in report["checks"][-1]["detail"]

    # one meter value changed: its signature no longer holds, and the CLI says so
    forged = json.loads(json.dumps(answer))
    forged["evidence"][3]["readings"][0]["reading"]["payload"]["data"]["energy_kwh"] += 40
    path.write_text(json.dumps(forged))
    run = verify_cli(path, plant["rpc"])
    assert run.exit_code == 1 and "FAIL evidence" in run.output and "signature" in run.output
    # evidence claimed for a checkpoint the contract does not have (rootOf reverts)
    elsewhere = json.loads(json.dumps(answer))
    elsewhere["evidence"][2]["anchor"]["index"] = 999
    path.write_text(json.dumps(elsewhere))
    run = verify_cli(path, plant["rpc"])
    assert run.exit_code == 1 and "no checkpoint 999" in run.output, run.output
    # a batch of evidence left out: the readings left give another result
    short = json.loads(json.dumps(answer))
    del short["evidence"][5]
    path.write_text(json.dumps(short))
    run = verify_cli(path, plant["rpc"], "--json")
    assert run.exit_code == 1 and json.loads(run.output)["failed"] == ["computation"]


def test_daily_energy_with_a_pending_reading(plant, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    http, orgs = plant["http"], plant["orgs"]
    month = plant["month"]
    days = {"device": "plant-meter-1", "period": "day", "from": (month + timedelta(days=9)).strftime("%Y-%m-%d"),
            "to": (month + timedelta(days=10)).strftime("%Y-%m-%d")}
    answer = http.get("/v1/production/energy", params=days, headers=bearer(orgs["auditor"])).json()
    # 67.5 kWh over the first ten days, 67.5 over the rest of the month: linear between readings
    rest = (plant["this_month"] - month).days - 10
    assert [p["kwh"] for p in answer["result"]["periods"]] == ["6.750", f"{67.5 / rest:.3f}"]
    path = tmp_path / "days.json"
    path.write_text(json.dumps(answer))
    assert verify_cli(path, plant["rpc"]).exit_code == 0

    # this month: the latest reading is not anchored yet, so it is pending and the month is open
    this = plant["this_month"].strftime("%Y-%m")
    r = http.get("/v1/production/energy", params={"device": "plant-meter-1", "period": "month", "from": this, "to": this},
                 headers=bearer(orgs["operator"]))
    assert r.status_code == 200, r.text
    answer = r.json()
    assert [p["id"] for p in answer["pending"]] == [plant["late"] and answer["pending"][0]["id"]]
    assert answer["pending"][0]["status"] == "unbatched" and answer["pending"][0]["batch"] is None
    [period] = answer["result"]["periods"]
    assert period["kwh"] == "0.000" and not period["complete"]
    assert [i["kind"] for i in period["issues"]] == ["no_reading_after"]
    path.write_text(json.dumps(answer))
    run = verify_cli(path, plant["rpc"])
    assert run.exit_code == 0 and "INCOMPLETE" in run.output, run.output


def test_run_hours(plant, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    day = plant["day"].strftime("%Y-%m-%d")
    r = plant["http"].get("/v1/production/run-hours", params={"device": "press-1", "period": "day", "from": day, "to": day},
                          headers=bearer(plant["orgs"]["bank"]))
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["result"]["hours"] == "6.000" and answer["result"]["complete"]  # 08-12 and 22-24
    path = tmp_path / "hours.json"
    path.write_text(json.dumps(answer))
    assert verify_cli(path, plant["rpc"]).exit_code == 0


def test_who_may_read_and_what_is_refused(plant) -> None:  # type: ignore[no-untyped-def]
    http, orgs = plant["http"], plant["orgs"]
    month = plant["month"].strftime("%Y-%m")
    query = {"device": "plant-meter-1", "month": month}
    r = http.get("/v1/production/utilisation", params=query, headers=bearer(orgs["insurer"]))
    assert (r.status_code, r.json()["error"]["code"]) == (403, "role_forbidden")
    assert "a bank" in r.json()["error"]["message"]
    r = http.get("/v1/production/utilisation", params=query, headers=bearer(orgs["other"]))  # not its device
    assert (r.status_code, r.json()["error"]["code"]) == (404, "device_not_found")
    assert http.get("/v1/production/utilisation", params=query).status_code == 401
    r = http.get("/v1/production/utilisation", params={**query, "month": "2026-13"}, headers=bearer(orgs["bank"]))
    assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_query") and "real month" in r.json()["error"]["message"]
    r = http.get("/v1/production/energy", params={"device": "plant-meter-1", "period": "week", "from": month, "to": month},
                 headers=bearer(orgs["bank"]))
    assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_request")
    r = http.get("/v1/production/energy", params={"device": "plant-meter-1", "period": "month", "from": month, "to": "2020-01"},
                 headers=bearer(orgs["bank"]))
    assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_query")
