"""kill -9 of the real ``pledgeledger serve`` process, from outside: during ingestion (a gateway
posting as fast as it can, on PostgreSQL), and during anchoring (between a checkpoint's
submission and its inclusion). On restart nothing acknowledged is lost, nothing is anchored
twice, every reading is provable and the audit is clean."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from ledger.audit import open_audit_chain
from ledger.chain import AnvilNode
from ledger.simulator import SimulatedDevice
from tests.conftest import pg_schema
from tests.e2e.test_service import wait_proof
from tests.reliability.harness import health, organisations, running_service, say, stored_ids, wait_for
from tests.reliability.loadclient import LoadClient
from tests.reliability.servers import rpc
from tests.reliability.soundness import assert_service_sound, assert_sound

pytestmark = [pytest.mark.anvil, pytest.mark.slow]


def test_kill9_during_ingestion(tmp_path: Path, node: AnvilNode) -> None:
    """A gateway posts signed batches as fast as it can into the real service (PostgreSQL, anvil);
    kill -9 mid-stream; restart. Every answered reading is stored, anchored once and provable; the
    request the kill cut off was stored whole or not at all, and sending it again is answered
    accepted or duplicate, never refused as a replay."""
    say("kill -9 during ingestion: starting the service on PostgreSQL")
    with pg_schema() as db_url, running_service(tmp_path / "data", node, db_url) as (service, db):
        operator, _ = organisations(db)
        with LoadClient(tmp_path, service.url, operator, devices=4, batch=20) as client:
            killed_at = len(client.wait_answers(10).answered)
            service.kill9()  # mid-stream: the client has a request in flight, or is about to send one
            say(f"kill -9 of the service after {killed_at} answered requests")
            cut = wait_for(lambda: client.log().unanswered_attempts, "the client to notice the kill")[0]
            stored = stored_ids(db, cut["ids"])
            say(f"the request the kill cut off (#{cut['n']}, {len(cut['ids'])} readings) is {'stored' if stored else 'absent'}")
            assert len(stored) in (0, len(cut["ids"])), f"request #{cut['n']} was half stored: {len(stored)} of {len(cut['ids'])}"
            service.start()
            say("service restarted")
            client.wait_answers(killed_at + 10)
            log = client.finish()

        statuses = log.statuses()
        say(f"client: {len(log.answered)} requests answered, {len(log.unanswered_attempts)} attempts unanswered, "
            f"answers {statuses}")  # fmt: skip
        assert set(statuses) <= {"accepted", "duplicate"}, f"a reading was refused: {statuses}"
        [resent] = log.resent  # the cut request, sent again until the restarted service answered
        assert resent[0]["n"] == cut["n"] and resent[-1]["answer"] == "ok"
        assert set(resent[-1]["statuses"]) == {"duplicate" if stored else "accepted"}, resent[-1]
        acknowledged = log.acknowledged()
        assert len(acknowledged) == len(set(acknowledged)) == sum(len(x["ids"]) for x in log.answered)

        assert_service_sound(db, node.url, tmp_path / "data", acknowledged)  # and nothing stored that was not answered
        r = service.cli("audit", "--rpc", node.url, "--json")
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        assert json.loads(r.stdout)["counts"]["readings"] == len(acknowledged)


def test_kill9_between_submission_and_inclusion(tmp_path: Path, node: AnvilNode) -> None:
    """On restart the service finds its own checkpoint transaction mined, confirms it, and sends nothing again."""
    with running_service(tmp_path / "data", node, f"sqlite:///{tmp_path / 'ledger.sqlite3'}") as (service, db):
        operator, bank = organisations(db)
        device = SimulatedDevice("wh1-scale-k9", "load_cell")
        r = httpx.post(f"{service.url}/v1/devices", json=device.registration(), headers={"Authorization": f"Bearer {operator}"}, timeout=30)
        assert r.status_code == 201, r.text

        rpc(node, "evm_setAutomine", False)  # from here the chain includes nothing until told to
        r = httpx.post(f"{service.url}/v1/readings", json=[device.reading({"weight_kg": 5.5}) for _ in range(10)], timeout=30)
        ids = [x["id"] for x in r.json()]
        assert [x["status"] for x in r.json()] == ["accepted"] * 10
        wait_for(lambda: health(service)["anchoring"]["pending"]["submitted"], "the service to submit its checkpoint")
        assert len(rpc(node, "txpool_content")["pending"]) == 1  # sent, not included

        service.kill9()  # gone while its checkpoint waits in the node's pool
        rpc(node, "evm_mine")  # the chain includes it meanwhile
        rpc(node, "evm_setAutomine", True)
        service.start()
        with httpx.Client(base_url=service.url, timeout=30) as http:
            bundles = [wait_proof(http, i, bank) for i in ids]
        assert {b["anchor"]["index"] for b in bundles} == {0}
        r = service.cli("verify", "-", "--rpc", node.url, input=json.dumps(bundles[-1]))
        assert r.returncode == 0, r.stdout + r.stderr
        assert_sound(db, open_audit_chain(node.url, tmp_path / "data"), ids)  # one checkpoint: recognised, not sent again
