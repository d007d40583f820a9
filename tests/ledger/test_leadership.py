"""Exactly one anchoring leader per database, and a fast takeover when it dies (kill -9)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from sqlalchemy import text

from ledger.leadership import Leadership
from ledger.settings import normalise_db_url
from ledger.store.db import Database
from tests.conftest import ROOT, pg_schema


def test_one_leader_at_a_time(db_url: str) -> None:
    db = Database(normalise_db_url(db_url))
    first, second = Leadership(db, "anchoring"), Leadership(db, "anchoring")
    try:
        assert first.acquire() and first.held()
        assert first.acquire()  # re-entrant for its holder
        assert not second.acquire() and not second.held()
        assert Leadership(db, "other-job").acquire()  # leases are per name
        first.release()
        assert not first.held()
        assert second.acquire() and second.held()
        assert not first.acquire()
    finally:
        first.release()
        second.release()
        db.dispose()


def test_ledgers_in_other_schemas_of_one_database_lead_each_their_own(db_url: str) -> None:
    """Advisory locks are per database: the lease is keyed by the schema too, or the ledger of one
    schema would keep another schema's ledger from ever anchoring."""
    if not db_url.startswith("postgresql"):
        return  # SQLite: one file, one ledger
    with pg_schema() as other_url:
        mine, other = Database(normalise_db_url(db_url)), Database(normalise_db_url(other_url))
        leases = [Leadership(mine, "anchoring"), Leadership(other, "anchoring"), Leadership(mine, "anchoring")]
        try:
            assert leases[0].acquire() and leases[1].acquire()
            assert not leases[2].acquire()  # the same schema: one leader
        finally:
            for lease in leases:
                lease.release()
            mine.dispose()
            other.dispose()


def test_takeover_within_seconds_after_kill9(db_url: str) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import time
            from ledger.leadership import Leadership
            from ledger.settings import normalise_db_url
            from ledger.store.db import Database
            lease = Leadership(Database(normalise_db_url({db_url!r})), "anchoring")
            assert lease.acquire()
            print("leading", flush=True)
            time.sleep(600)
        """)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )
    db = Database(normalise_db_url(db_url))
    follower = Leadership(db, "anchoring")
    try:
        assert holder.stdout.readline().strip() == "leading"
        assert not follower.acquire()
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        died = time.monotonic()
        while not follower.acquire():
            assert time.monotonic() - died < 5, "no takeover within 5 s of the leader's death"
            time.sleep(0.1)
        assert follower.held()
    finally:
        if holder.poll() is None:
            holder.kill()
        follower.release()
        db.dispose()


def _drop_lease_connection(db: Database, lease: Leadership) -> None:
    """What a database restart does to a lease: the server ends the session holding the lock."""
    pid = lease._connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()  # type: ignore[union-attr]
    lease._connection.commit()  # type: ignore[union-attr]
    with db.engine.connect() as other:
        assert other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()


def test_a_lease_the_database_dropped_is_taken_again_in_a_new_term(db_url: str) -> None:
    if not db_url.startswith("postgresql"):
        return  # an flock is not dropped by anyone but its holder
    db = Database(normalise_db_url(db_url))
    lease = Leadership(db, "anchoring")
    try:
        assert lease.acquire() and lease.term == 1
        assert lease.acquire() and lease.term == 1  # still held: the same term
        _drop_lease_connection(db, lease)
        assert not lease.held()
        assert lease.acquire() and lease.term == 2
    finally:
        lease.release()
        db.dispose()


def test_the_anchorer_reconciles_again_when_it_leads_a_new_term(db_url: str, ledger_factory, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Another instance may have anchored while the lease was away: catch up with the chain first."""
    if not db_url.startswith("postgresql"):
        return
    ledger = ledger_factory(db_url)
    anchorer, reconciled = ledger.anchorer, []
    original = anchorer.reconcile
    monkeypatch.setattr(anchorer, "reconcile", lambda: (reconciled.append(anchorer.leadership.term), original())[1])
    anchorer.start()
    assert anchorer.leading and reconciled == [1]
    _drop_lease_connection(ledger.db, anchorer.leadership)
    deadline = time.monotonic() + 20
    while reconciled != [1, 2] or not anchorer.leading:
        assert time.monotonic() < deadline, f"no reconcile in the new term: {reconciled}"
        time.sleep(0.05)
