"""Issue 4 fault test from outside: `kill -9` of the real service process after it submitted a
checkpoint and before the chain included it. On restart the service finds its own transaction
mined, confirms it, and anchors nothing twice; every accepted reading is provable."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
from web3 import Web3
import pytest

from ledger.chain import ANVIL_DEV_KEY, AnvilNode, ChainReader
from ledger.simulator import SimulatedDevice
from tests.e2e.test_service import Service, wait_proof
from tests.reliability.test_anchoring_faults import node, rpc  # noqa: F401 - node is a fixture

pytestmark = [pytest.mark.anvil, pytest.mark.slow]


def test_kill9_between_submission_and_inclusion(tmp_path: Path, node: AnvilNode) -> None:
    service = Service(tmp_path / "data", f"sqlite:///{tmp_path / 'ledger.sqlite3'}")
    service.env.update(PLEDGELEDGER_CHAIN=node.url, PLEDGELEDGER_RELAYER_KEY=ANVIL_DEV_KEY, PLEDGELEDGER_CONFIRMATIONS="1")
    try:
        assert service.cli("deploy", "--rpc", node.url).returncode == 0
        service.start()
        operator = json.loads(service.cli("org", "create", "Warehouse", "--role", "operator").stdout)["api_key"]
        bank = json.loads(service.cli("org", "create", "Bank", "--role", "bank").stdout)["api_key"]
        device = SimulatedDevice("wh1-scale-k9", "load_cell")
        r = httpx.post(f"{service.url}/v1/devices", json=device.registration(), headers={"Authorization": f"Bearer {operator}"}, timeout=30)
        assert r.status_code == 201, r.text

        rpc(node, "evm_setAutomine", False)  # from here the chain includes nothing until told to
        r = httpx.post(f"{service.url}/v1/readings", json=[device.reading({"weight_kg": 5.5}) for _ in range(10)], timeout=30)
        ids = [x["id"] for x in r.json()]
        assert [x["status"] for x in r.json()] == ["accepted"] * 10
        deadline = time.monotonic() + 30
        while httpx.get(f"{service.url}/healthz", timeout=10).json()["anchoring"]["pending"]["submitted"] == 0:
            assert time.monotonic() < deadline, "the service never submitted its checkpoint"
            time.sleep(0.1)
        assert len(rpc(node, "txpool_content")["pending"]) == 1  # sent, not included

        service.kill9()  # gone while its checkpoint waits in the node's pool
        rpc(node, "evm_mine")  # the chain includes it meanwhile
        rpc(node, "evm_setAutomine", True)
        service.start()
        with httpx.Client(base_url=service.url, timeout=30) as http:
            bundles = [wait_proof(http, i, bank) for i in ids]
        assert {b["anchor"]["index"] for b in bundles} == {0}
        reader = ChainReader(Web3(Web3.HTTPProvider(node.url)))
        anchor = bundles[0]["anchor"]["contract"]
        assert reader.size(anchor) == 1  # recognised as its own, not sent again
        r = service.cli("verify", "-", "--rpc", node.url, input=json.dumps(bundles[-1]))
        assert r.returncode == 0, r.stdout + r.stderr
    finally:
        service.stop()
