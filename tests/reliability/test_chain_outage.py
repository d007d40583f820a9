"""The chain node down for a minute under the running service: anvil is stopped for 60 s while a
gateway keeps posting readings, then started again on the same port and state.

Ingestion does not need the chain: every request is answered and its readings accepted while
the node is away, and batches go on being sealed. The anchoring loop reports the node
unreachable and backs off (at most 30 s between tries); when the node is back the backlog is
anchored in order, each checkpoint once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from ledger.chain import AnvilNode
from ledger.store.db import Database
from ledger.store.models import Batch
from tests.reliability.harness import health, organisations, running_service, say, wait_for
from tests.reliability.loadclient import LoadClient
from tests.reliability.soundness import assert_service_sound

pytestmark = [pytest.mark.anvil, pytest.mark.slow]

OUTAGE_S = 60.0


def batch_states(db: Database) -> dict[str, int]:
    with db.session() as session:
        return dict(session.execute(select(Batch.status, func.count()).group_by(Batch.status)).all())


def test_chain_node_down_for_a_minute(tmp_path: Path, node: AnvilNode) -> None:
    db_url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    say("chain node down for a minute: starting the service")
    with running_service(tmp_path / "data", node, db_url) as (service, db):
        operator, _ = organisations(db)
        with LoadClient(tmp_path, service.url, operator, devices=2, batch=4, pause=0.4) as client:
            client.wait_answers(5)
            wait_for(lambda: batch_states(db).get("included"), "a first batch anchored")
            anchored_before = batch_states(db)["included"]

            node.stop()
            down_at = time.monotonic()
            answered_at_stop = len(client.log().answered)
            say(f"anvil stopped ({anchored_before} batches anchored, {answered_at_stop} requests answered)")
            while (elapsed := time.monotonic() - down_at) < OUTAGE_S:
                time.sleep(min(15.0, OUTAGE_S - elapsed))
                anchoring = health(service)["anchoring"]  # the service answers without its chain
                say(f"  {time.monotonic() - down_at:4.0f} s down: {len(client.log().answered)} requests answered, "
                    f"batches {batch_states(db)}, last error: {anchoring['last_error']}")  # fmt: skip
            log = client.log()
            assert not log.unanswered_attempts, log.unanswered_attempts[:3]  # ingestion never needed the chain
            assert len(log.answered) - answered_at_stop >= 20, "ingestion slowed down without the chain"
            assert "unreachable" in (anchoring["last_error"] or ""), anchoring
            states = batch_states(db)
            assert states.get("included") == anchored_before and states.get("sealed", 0) + states.get("submitted", 0) >= 2, states

            node.start()  # same port, same state
            back_at = time.monotonic()
            say("anvil is back")
            wait_for(lambda: batch_states(db).get("included", 0) > anchored_before, "anchoring to resume", timeout=60)
            say(f"anchoring resumed {time.monotonic() - back_at:.1f} s after the node came back")
            log = client.finish()
        statuses = log.statuses()
        say(f"client: {len(log.answered)} requests answered, answers {statuses}")
        assert set(statuses) == {"accepted"}, statuses
        acknowledged = log.acknowledged()

        assert_service_sound(db, node.url, tmp_path / "data", acknowledged, timeout=90)
        wait_for(lambda: health(service)["anchoring"]["last_error"] is None, "the loop to report no error")
