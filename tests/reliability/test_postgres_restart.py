"""PostgreSQL restarted under the running service: a private cluster (never the machine's shared
one) is stopped in the middle of ingestion and anchoring (``pg_ctl stop -m immediate``: the
server dies as in a crash), left down a few seconds, and started again.

The service is not restarted: its connection pool drops the dead connections (pre-ping), the
requests that failed meanwhile are answered 503 and sent again by the gateway, and the
anchoring loop wins its leadership lease back (an advisory lock held on a connection of its
own, which died with the server) and goes on. Nothing acknowledged is lost."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest

from ledger.chain import AnvilNode
from tests.reliability.harness import health, organisations, running_service, say, wait_for
from tests.reliability.loadclient import LoadClient
from tests.reliability.servers import PrivatePostgres
from tests.reliability.soundness import assert_service_sound

pytestmark = [pytest.mark.anvil, pytest.mark.slow]

DOWN_S = 3.0


def advisory_locks(server: PrivatePostgres) -> int:
    """Advisory locks granted in the private cluster: the service's leadership leases."""
    with psycopg.connect(server.url, connect_timeout=3) as conn:
        return conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted").fetchone()[0]


@pytest.mark.parametrize("ingest_processes", [1, 2], ids=["in-process", "ingestion-pool"])
def test_postgres_restarted_under_ingestion_and_anchoring(tmp_path: Path, node: AnvilNode, private_postgres: PrivatePostgres,
                                                          ingest_processes: int) -> None:
    """With ``ingest_processes=2`` the batches are stored by the worker processes of
    :mod:`ledger.ingest_pool`, each with connections of its own, which must recover as well."""
    say(f"PostgreSQL restart: starting the service on a private PostgreSQL cluster, {ingest_processes} ingestion process(es)")
    with running_service(tmp_path / "data", node, private_postgres.url,
                         PLEDGELEDGER_INGEST_PROCESSES=str(ingest_processes)) as (service, db):
        operator, _ = organisations(db)
        with LoadClient(tmp_path, service.url, operator, devices=4, batch=10, pause=0.05) as client:
            before = len(client.wait_answers(10).answered)
            wait_for(lambda: health(service)["anchoring"]["leader"] and advisory_locks(private_postgres), "the anchoring lease")
            pid = service.proc.pid

            say(f"stopping PostgreSQL (immediate) after {before} answered requests; down for {DOWN_S:g} s")
            private_postgres.stop("immediate")
            time.sleep(DOWN_S)
            private_postgres.start()
            restarted = time.monotonic()
            say("PostgreSQL is back")

            client.wait_answers(before + 10, timeout=60)
            say(f"ingestion goes on: {len(client.log().answered)} requests answered")
            wait_for(lambda: advisory_locks(private_postgres), "the anchoring loop to take its lease again", timeout=60)
            anchoring = wait_for(lambda: (h := health(service)["anchoring"])["leader"] and h["last_error"] is None and h,
                                 "the anchoring loop to report no error", timeout=60)  # fmt: skip
            say(f"anchoring recovered {time.monotonic() - restarted:.1f} s after the restart: {anchoring}")
            log = client.finish()
            assert service.proc.pid == pid and service.proc.poll() is None, "the service was restarted or died"

        statuses = log.statuses()
        say(f"client: {len(log.answered)} requests answered, {len(log.unanswered_attempts)} attempts unanswered "
            f"({sorted({x.get('http', 'no answer') for x in log.unanswered_attempts}, key=str)}), answers {statuses}")  # fmt: skip
        assert set(statuses) <= {"accepted", "duplicate"}, f"a reading was refused: {statuses}"
        assert log.resent, "no request failed while PostgreSQL was down"
        for attempt in log.unanswered_attempts:  # the service answered, naming the fault and when to retry
            assert attempt.get("http") == 503 and "database_unavailable" in attempt["error"], attempt
        for attempts in log.resent:  # each request was stored whole or not at all before it was answered
            assert len(set(attempts[-1]["statuses"])) == 1, attempts[-1]
        acknowledged = log.acknowledged()

        assert_service_sound(db, node.url, tmp_path / "data", acknowledged, timeout=120)
