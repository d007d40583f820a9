"""Leader election: at most one process per database does a singleton job (anchoring).

Several service instances may share one PostgreSQL; each runs the anchoring loop, and only
the one holding the lease does any work. The lease is a PostgreSQL session-level advisory lock
held on a connection of its own, keyed by the job's name and the ledger's schema (advisory locks
are per database, and ledgers in other schemas of the same database are other ledgers, each with
its own leader). It is released by the server the moment its holder's
connection goes away: a ``kill -9``, a crash or a network cut hands it to a follower at that
follower's next attempt (one anchoring interval, a second or so). On SQLite (one machine by
nature) it is an ``flock`` on a file beside the database, released by the kernel likewise.

A leader checks that it still holds the lease before each round of work (:meth:`held`); if
its lock connection broke, it stops and competes again. Two writers at once cannot corrupt the
chain anyway: the anchor contract refuses a checkpoint that does not extend its current head.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import zlib
from pathlib import Path
from typing import IO

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from ledger.store.db import Database

__all__ = ["Leadership"]

log = logging.getLogger(__name__)


class Leadership:
    """A named lease on ``db``: :meth:`acquire` (non-blocking), :meth:`held`, :meth:`release`."""

    def __init__(self, db: Database, name: str) -> None:
        self.db = db
        self.name = name
        self._connection: Connection | None = None
        self._file: IO[bytes] | None = None
        self._lock = threading.Lock()
        #: Counts the times this process took the lease: a new term means it was lost meanwhile
        #: (e.g. the database restarted and dropped the lock with its connection), and whatever
        #: another holder did in between must be caught up with.
        self.term = 0

    def acquire(self) -> bool:
        """Take the lease if it is free (or already ours); never waits."""
        with self._lock:
            if self._holding():
                return True
            self._drop()
            got = self._acquire_pg() if self.db.dialect == "postgresql" else self._acquire_file()
            if got:
                self.term += 1
                log.info("this process now leads %s (pid %d)", self.name, os.getpid())
            return got

    def held(self) -> bool:
        """Whether we still hold the lease (for PostgreSQL: its connection still answers)."""
        with self._lock:
            if self._holding():
                return True
            if self._connection is not None or self._file is not None:
                log.warning("lost the %s lease; competing for it again", self.name)
                self._drop()
            return False

    def release(self) -> None:
        with self._lock:
            self._drop()

    # -- PostgreSQL: a session-level advisory lock on a dedicated connection ------------------

    def _acquire_pg(self) -> bool:
        connection = self.db.engine.connect()
        try:
            schema = connection.execute(text("SELECT current_schema()")).scalar() or ""
            key = zlib.crc32(f"pledgeledger:{self.name}:{schema}".encode())  # advisory-lock ids are per database
            got = bool(connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar())
            connection.commit()  # the lock is held by the session, not the transaction
        except DBAPIError:
            connection.close()
            raise
        if not got:
            connection.close()
            return False
        self._connection = connection
        return True

    # -- SQLite: flock on a file beside the database ------------------------------------------

    def _lock_path(self) -> Path | None:
        database = self.db.engine.url.database
        if not database or database == ":memory:":
            return None
        return Path(database).with_name(Path(database).name + f".{self.name}.lock")

    def _acquire_file(self) -> bool:
        path = self._lock_path()
        if path is None:  # an in-memory database lives in this process alone
            self._file = open(os.devnull, "rb")  # noqa: SIM115 - held until release
            return True
        handle = path.open("ab")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self._file = handle
        return True

    # -- common ---------------------------------------------------------------------------------

    def _holding(self) -> bool:
        if self._file is not None:
            return True
        if self._connection is None:
            return False
        try:
            self._connection.execute(text("SELECT 1"))
            self._connection.commit()
            return True
        except DBAPIError:
            return False

    def _drop(self) -> None:
        if self._connection is not None:
            # invalidate, not close: a pooled connection would keep its session, and the lock, alive
            self._connection.invalidate()
            self._connection.close()
            self._connection = None
        if self._file is not None:
            self._file.close()  # closing the descriptor releases the flock
            self._file = None
