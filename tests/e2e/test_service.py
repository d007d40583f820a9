"""The acceptance path from outside: the real `pledgeledger` processes, a managed anvil chain,
an independently implemented device, OpenZeppelin's JS verifier, and a kill -9 of everything."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ledger.chain.backends import find_anvil
from tests.conftest import IN_CI, ROOT, free_port, run_node

E2E = Path(__file__).parent
CLI = [sys.executable, "-m", "api.cli"]

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _need_anvil() -> None:
    if find_anvil() is None:
        if IN_CI:
            pytest.fail("anvil (node_modules/@foundry-rs/anvil) is required in CI")
        pytest.skip("anvil not installed")


class Service:
    def __init__(self, data_dir: Path, db_url: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "PLEDGELEDGER_DATA_DIR": str(data_dir), "PLEDGELEDGER_DB_URL": db_url,
                    "PLEDGELEDGER_CHAIN": "managed", "PLEDGELEDGER_PORT": str(self.port),
                    "PLEDGELEDGER_BATCH_INTERVAL_S": "0.5"}
        self.log = data_dir.parent / f"service-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> dict:
        self.proc = subprocess.Popen(CLI + ["serve"], env=self.env, cwd=ROOT, start_new_session=True,
                                     stdout=self.log.open("ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                return httpx.get(f"{self.url}/healthz", timeout=2).raise_for_status().json()
            except httpx.HTTPError:
                time.sleep(0.2)
        raise AssertionError("service not ready in 90 s:\n" + self.log.read_text()[-3000:])

    def kill9(self) -> None:
        """kill -9 of the service's process group. Its anvil runs in a session of its own and
        lives on, as after a real crash; the next start stops it (``anvil.pid``)."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        self._stop_anvil()

    def _stop_anvil(self) -> None:
        """Leave no anvil behind (one left by a kill9 the test did not follow with a start)."""
        pid_file = Path(self.env["PLEDGELEDGER_DATA_DIR"]) / "chain" / "anvil.pid"
        try:
            pid = int(pid_file.read_text().strip())
            os.killpg(pid, signal.SIGKILL)
        except (OSError, ValueError):
            pass

    def cli(self, *args: str, input: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(CLI + list(args), env=self.env, cwd=ROOT, capture_output=True, text=True, input=input, timeout=timeout)


def wait_proof(http: httpx.Client, reading_id: str, key: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = http.get(f"/v1/readings/{reading_id}/proof", headers={"Authorization": f"Bearer {key}"})
        if r.status_code == 200:
            return r.json()
        assert r.status_code == 409 and r.json()["error"]["code"] == "proof_pending", r.text
        time.sleep(0.2)
    raise AssertionError(f"no proof for {reading_id} within {timeout} s")


def test_signed_reading_to_chain_verified_proof_survives_kill9(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    service = Service(data_dir, f"sqlite:///{tmp_path / 'ledger.sqlite3'}")
    try:
        health = service.start()
        assert health["status"] == "ok" and health["chain"]["rpc_url"].startswith("http://127.0.0.1:")
        rpc = health["chain"]["rpc_url"]

        orgs = {}
        for name, role in [("Warehouse", "operator"), ("Bank", "bank")]:
            r = service.cli("org", "create", name, "--role", role)
            assert r.returncode == 0, r.stderr
            orgs[role] = json.loads(r.stdout)["api_key"]

        now = datetime.now(timezone.utc)
        stamps = [(now + timedelta(milliseconds=i)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z" for i in range(3)]
        device = run_node(E2E / "webcrypto_device.mjs", {"device": "wh1-scale-03", "kind": "load_cell", "lot": "LOT-2026-0001",
                                                         "data": [{"weight_kg": 1250.5}, {"weight_kg": 1250.25}, {"weight_kg": 1e21}],
                                                         "ts": stamps})
        with httpx.Client(base_url=service.url, timeout=30) as http:
            r = http.post("/v1/devices", json=device["registration"], headers={"Authorization": f"Bearer {orgs['operator']}"})
            assert r.status_code == 201, r.text
            ids = []
            for reading in device["readings"]:
                r = http.post("/v1/readings", json=reading)
                assert r.status_code == 201, r.text
                ids.append(r.json()["id"])
            started = time.monotonic()
            bundle = wait_proof(http, ids[0], orgs["bank"])
            assert time.monotonic() - started < 30

        # OpenZeppelin's own JS library accepts the proof
        ref = run_node(ROOT / "tests/attestation/oz_merkle.mjs",
                       {"values": [[bundle["salt"], bundle["digest"]]],
                        "bundles": [{"root": bundle["root"], "salt": bundle["salt"], "digest": bundle["digest"], "proof": bundle["proof"]}]})
        assert ref["bundleVerified"] == [True]

        good = tmp_path / "bundle.json"
        good.write_text(json.dumps(bundle))
        r = service.cli("verify", str(good), "--rpc", rpc)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "bundle verified" in r.stdout

        # any changed byte of the payload: non-zero exit naming the failed check
        tampered = json.loads(json.dumps(bundle))
        tampered["reading"]["payload"]["data"]["weight_kg"] = 1250.4
        bad = tmp_path / "tampered.json"
        bad.write_text(json.dumps(tampered))
        r = service.cli("verify", str(bad), "--rpc", rpc, "--json")
        assert r.returncode == 1
        assert "signature" in json.loads(r.stdout)["failed"]
        r = service.cli("verify", str(bad), "--rpc", rpc)
        assert r.returncode == 1 and "FAIL" in r.stdout and "signature" in r.stdout

        # kill -9 of the whole service, its anvil included, then a restart
        service.kill9()
        health2 = service.start()
        assert health2["chain"]["contracts"] == health["chain"]["contracts"]
        with httpx.Client(base_url=service.url, timeout=30) as http:
            for reading_id in ids:
                r = http.get(f"/v1/readings/{reading_id}", headers={"Authorization": f"Bearer {orgs['bank']}"})
                assert r.status_code == 200, r.text
            bundles = [wait_proof(http, reading_id, orgs["bank"]) for reading_id in ids]
        for i, b in enumerate(bundles):
            path = tmp_path / f"after-{i}.json"
            path.write_text(json.dumps(b))
            r = service.cli("verify", str(path), "--rpc", health2["chain"]["rpc_url"])
            assert r.returncode == 0, r.stdout + r.stderr
    finally:
        service.stop()


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def test_sigterm_stops_the_chain_node_and_the_ingestion_workers(tmp_path: Path) -> None:
    """SIGTERM to `pledgeledger serve` (what systemd and Kubernetes send) shuts it down fully: the
    anvil it started and its ingestion processes stop too, and it ends as SIGTERM ends a process."""
    data_dir = tmp_path / "data"
    service = Service(data_dir, f"sqlite:///{tmp_path / 'ledger.sqlite3'}")
    service.env["PLEDGELEDGER_INGEST_PROCESSES"] = "2"
    try:
        service.start()
        assert service.proc is not None
        anvil = int((data_dir / "chain" / "anvil.pid").read_text())
        children = {int(p) for p in Path(f"/proc/{service.proc.pid}/task/{service.proc.pid}/children").read_text().split()}
        workers = children - {anvil}
        assert _alive(anvil) and len(workers) >= 2, (anvil, children)

        service.proc.send_signal(signal.SIGTERM)  # the service alone, not its process group
        assert service.proc.wait(timeout=30) == -signal.SIGTERM, service.log.read_text()[-3000:]
        deadline = time.monotonic() + 10
        while any(map(_alive, {anvil, *workers})) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(anvil), "the managed anvil outlived the service"
        assert not any(map(_alive, workers)), "ingestion workers outlived the service"
        assert "Traceback" not in service.log.read_text()
    finally:
        service.stop()


def test_deploy_to_rpc_then_serve_against_it(tmp_path: Path) -> None:
    """`pledgeledger deploy --rpc URL` on an external node, then the service uses that deployment."""
    from ledger.chain.backends import ANVIL_DEV_KEY, AnvilNode

    node = AnvilNode(tmp_path / "external-chain")
    node.start()
    try:
        data_dir = tmp_path / "data"
        service = Service(data_dir, f"sqlite:///{tmp_path / 'ledger.sqlite3'}")
        service.env["PLEDGELEDGER_CHAIN"] = node.url
        service.env["PLEDGELEDGER_RELAYER_KEY"] = ANVIL_DEV_KEY

        r = service.cli("serve")  # no deployment recorded: refuses, naming the fix
        assert r.returncode != 0 and "pledgeledger deploy" in r.stdout + r.stderr, r.stdout + r.stderr

        r = service.cli("deploy", "--rpc", node.url)
        assert r.returncode == 0, r.stderr
        deployed = json.loads(r.stdout)
        assert set(deployed["contracts"]) == {"DeviceRegistry", "ReadingAnchor", "CollateralRegistry"}
        assert (data_dir / "deployments" / f"{deployed['chain_id']}.json").exists()

        health = service.start()
        assert health["chain"]["rpc_url"] == node.url
        assert health["chain"]["contracts"] == deployed["contracts"]
    finally:
        service.stop()
        node.stop()


def test_workers_share_the_port_and_the_parent_anchors(tmp_path: Path, db_url: str) -> None:
    """`serve --workers 2`: two HTTP worker processes on one port, one anchoring loop in the parent."""
    from ledger.simulator import SimulatedDevice

    service = Service(tmp_path / "data", db_url)
    r = service.cli("serve", "--workers", "2", "--chain", "embedded")  # cannot be shared: refused, naming the fix
    assert r.returncode == 2 and "--chain managed" in r.stdout + r.stderr, r.stdout + r.stderr

    service.env["PLEDGELEDGER_WORKERS"] = "2"
    try:
        service.start()
        children = subprocess.run(["pgrep", "-P", str(service.proc.pid)], capture_output=True, text=True).stdout.split()
        commands = [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in children]
        assert sum(b"spawn_main" in c for c in commands) == 2, commands  # two spawned workers beside anvil

        operator = json.loads(service.cli("org", "create", "Warehouse", "--role", "operator").stdout)["api_key"]
        bank = json.loads(service.cli("org", "create", "Bank", "--role", "bank").stdout)["api_key"]
        devices = [SimulatedDevice(f"wh1-scale-w{i}", "load_cell") for i in range(4)]
        ids = []
        for device in devices:  # each request on a new connection: the kernel spreads them over the workers
            r = httpx.post(f"{service.url}/v1/devices", json=device.registration(), headers={"Authorization": f"Bearer {operator}"}, timeout=30)
            assert r.status_code == 201, r.text
            r = httpx.post(f"{service.url}/v1/readings", json=[device.reading({"weight_kg": 10.5}) for _ in range(20)], timeout=30)
            assert [x["status"] for x in r.json()] == ["accepted"] * 20, r.text
            ids.append(r.json()[-1]["id"])
        with httpx.Client(base_url=service.url, timeout=30) as http:
            for reading_id in ids:
                assert wait_proof(http, reading_id, bank)["anchor"]["status"] in ("included", "final")

        # one /metrics for the whole service: whichever worker answers adds up every process's
        # counters (prometheus_client's multiprocess mode), the parent's anchoring included
        for _ in range(6):  # each on a new connection, so several workers answer
            text = httpx.get(f"{service.url}/metrics", timeout=30).text
            samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in text_string_to_metric_families(text) for s in f.samples}
            assert samples[("pledgeledger_readings_total", (("code", ""), ("status", "accepted")))] == 80, text
            assert samples[("pledgeledger_http_requests_total", (("method", "POST"), ("route", "/v1/readings"), ("status", "200")))] == 4
            assert samples[("pledgeledger_anchored_readings_total", ())] == 80  # counted in the parent, which anchors
            assert samples[("pledgeledger_anchor_latency_seconds_count", ())] >= 1
            assert samples[("pledgeledger_backlog_readings", ())] == 0
            assert "process_resident_memory_bytes" not in text  # per-process collectors make no sense summed
    finally:
        service.stop()


def test_two_instances_one_anchors_and_the_other_takes_over_after_kill9(tmp_path: Path, db_url: str) -> None:
    """Issue 4 scale-out: two services on one database and one chain; exactly one anchors; a
    kill -9 of that one hands anchoring to the other within seconds, and nothing is lost."""
    from ledger.chain.backends import ANVIL_DEV_KEY, AnvilNode
    from ledger.simulator import SimulatedDevice

    node = AnvilNode(tmp_path / "chain")
    node.start()
    services = [Service(tmp_path / "data", db_url) for _ in range(2)]
    for s in services:
        s.env.update(PLEDGELEDGER_CHAIN=node.url, PLEDGELEDGER_RELAYER_KEY=ANVIL_DEV_KEY)
    try:
        assert services[0].cli("deploy", "--rpc", node.url).returncode == 0
        healths = [s.start() for s in services]
        leaders = [h["anchoring"]["leader"] for h in healths]
        assert sorted(leaders) == [False, True], healths
        leader, follower = (services[0], services[1]) if leaders[0] else (services[1], services[0])

        operator = json.loads(leader.cli("org", "create", "Warehouse", "--role", "operator").stdout)["api_key"]
        bank = json.loads(leader.cli("org", "create", "Bank", "--role", "bank").stdout)["api_key"]
        device = SimulatedDevice("wh1-scale-ha", "load_cell")
        r = httpx.post(f"{follower.url}/v1/devices", json=device.registration(), headers={"Authorization": f"Bearer {operator}"}, timeout=30)
        assert r.status_code == 201, r.text
        first = [httpx.post(f"{s.url}/v1/readings", json=device.reading({"weight_kg": 7.5}), timeout=30).json()["id"] for s in services]
        with httpx.Client(base_url=follower.url, timeout=30) as http:
            anchored = sorted({wait_proof(http, i, bank)["anchor"]["index"] for i in first})
        assert anchored in ([0], [0, 1])  # one or two batches (the readings may straddle a seal), each once

        leader.kill9()
        killed = time.monotonic()
        later = httpx.post(f"{follower.url}/v1/readings", json=device.reading({"weight_kg": 7.5}), timeout=30).json()["id"]
        with httpx.Client(base_url=follower.url, timeout=30) as http:
            bundle = wait_proof(http, later, bank)
            assert time.monotonic() - killed < 15
            assert bundle["anchor"]["index"] == anchored[-1] + 1  # the next checkpoint: nothing anchored twice or skipped
            assert http.get("/healthz").json()["anchoring"]["leader"] is True
        r = follower.cli("verify", "-", "--rpc", node.url, input=json.dumps(bundle))
        assert r.returncode == 0, r.stdout + r.stderr
    finally:
        for s in services:
            s.stop()
        node.stop()
