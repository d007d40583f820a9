"""Engine and session factory for SQLite (default) or PostgreSQL."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from alembic import command
from alembic.config import Config
from sqlalchemy import Table, any_, bindparam, create_engine, event, insert, text, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from ledger.errors import Unavailable

__all__ = [
    "UNIQUE_VIOLATIONS", "Database", "alembic_config", "bulk_insert", "bulk_update", "database_unavailable",
    "database_unavailable_error", "first_line",
    "log_failed_round", "one_of", "storable_text",
]

#: What a rejected insert of a duplicate raises, through SQLAlchemy or straight from a COPY.
UNIQUE_VIOLATIONS: tuple[type[Exception], ...] = (IntegrityError, psycopg.errors.IntegrityError)


def database_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database cannot be reached, is restarting or is busy (not that the
    statement is wrong): the work was not done (a transaction that did not commit is rolled back)
    and can be tried again in a moment. The pool drops broken connections (``pool_pre_ping``),
    so the next try gets a fresh one."""
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        exc = exc.orig if exc.orig is not None else exc
    if isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)):
        return True  # refused, terminated by a shutdown, starting up; also deadlocks and cancellations
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc))


def database_unavailable_error() -> Unavailable:
    """What a request is answered while :func:`database_unavailable` holds: 503
    ``database_unavailable``, with a ``Retry-After``."""
    return Unavailable(
        "the ledger's database is unreachable or restarting; send the same request again in a few seconds "
        "(a reading that was stored after all is then answered duplicate)",
        code="database_unavailable",
        retry_after=2,
    )


def first_line(exc: BaseException) -> str:
    """The first line of an error's message (a driver's message goes on for lines), for a log line."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def log_failed_round(logger: logging.Logger, what: str, exc: BaseException) -> str:
    """Log a background loop's failed round (call it in the ``except`` block) and return what went
    wrong, for the loop's ``last_error``: one line when the database is unavailable (the loop
    tries again; the pool reconnects), the traceback of anything else."""
    if database_unavailable(exc):
        logger.warning("%s paused, database unavailable: %s", what, first_line(exc))
        return f"database unavailable: {first_line(exc)}"
    logger.exception("%s failed unexpectedly", what)
    return repr(exc)

MIGRATIONS = Path(__file__).with_name("migrations")


def storable_text(value: str) -> bool:
    """Whether a text column can hold ``value`` on every backend: PostgreSQL refuses NUL (U+0000)."""
    return "\x00" not in value


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith("sqlite"):
            self.engine: Engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "begin", _sqlite_begin_immediate)
        else:
            self.engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return "postgresql" if self.engine.dialect.name == "postgresql" else self.engine.dialect.name

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision (safe to call from several processes)."""
        with self.engine.begin() as connection:
            if self.dialect == "postgresql":  # one migrator at a time; released at commit
                connection.execute(text("SELECT pg_advisory_xact_lock(7460926311)"))
            config = alembic_config(connection)
            command.upgrade(config, "head")


    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in a transaction: committed on success, rolled back on error."""
        with self._sessions() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()


def one_of(session: Session, column: Any, values: Iterable[Any]) -> Any:
    """``column IN values`` for a long list: on PostgreSQL ``column = ANY(array)``, one
    parameter (an ``IN`` of hundreds is rendered, sent and parsed anew each time), elsewhere
    ``IN``."""
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, list(values), type_=postgresql.ARRAY(column.type)))
    return column.in_(list(values))


def bulk_insert(session: Session, table: Table, rows: Sequence[Any], *, columns: Sequence[str] | None = None) -> None:
    """Insert many rows in the session's transaction: ``COPY`` on PostgreSQL (several times
    faster than any ``INSERT``), an ``executemany`` elsewhere. Rows are dicts with the same
    keys, or (with ``columns``) tuples in that order. A duplicate key raises one of
    :data:`UNIQUE_VIOLATIONS`.
    """
    if not rows:
        return
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        session.execute(insert(table), rows if columns is None else [dict(zip(columns, row)) for row in rows])
        return
    if columns is None:
        columns = list(rows[0])
        rows = [[row[c] for c in columns] for row in rows]
    names = ", ".join(connection.dialect.identifier_preparer.quote(c) for c in columns)
    # binary: neither side formats or parses text (timestamps, hex bytea); the column types name
    # the binary encoders ("VARCHAR(64)" -> varchar, "TIMESTAMP WITHOUT TIME ZONE" -> timestamp)
    types = [table.c[c].type.compile(connection.dialect).split("(")[0].lower() for c in columns]
    with connection.connection.dbapi_connection.cursor() as cursor:  # type: ignore[union-attr]
        with cursor.copy(f"COPY {table.name} ({names}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(types)
            for row in rows:
                copy.write_row(row)


#: Up to this many rows, :func:`bulk_update` sends the values as arrays in one statement.
_UNNEST_ROWS = 2000


def bulk_update(session: Session, table: Table, key: str, rows: Sequence[dict[str, Any]]) -> None:
    """Set columns of many rows, each found by its ``key`` column, in the session's transaction.

    On PostgreSQL one ``UPDATE … FROM unnest(arrays)`` statement for up to
    :data:`_UNNEST_ROWS` rows (a request's devices), and for more the new values are
    ``COPY``-ed into a temporary table and applied by one ``UPDATE … FROM`` (a 65,536-reading
    batch seals in well under a second instead of many); elsewhere an ``executemany``. Every
    row must name the same columns.
    """
    if not rows:
        return
    connection = session.connection()
    columns = [c for c in rows[0] if c != key]
    if connection.dialect.name != "postgresql":
        statement = update(table).where(table.c[key] == bindparam("_key")).values({c: bindparam(c) for c in columns})
        session.execute(statement, [{"_key": row[key], **{c: row[c] for c in columns}} for row in rows])
        return
    quote = connection.dialect.identifier_preparer.quote
    names = [key, *columns]
    if len(rows) <= _UNNEST_ROWS:
        arrays = ", ".join(f"%s::{table.c[c].type.compile(connection.dialect)}[]" for c in names)
        assignments = ", ".join(f"{quote(c)} = v.{quote(c)}" for c in columns)
        with connection.connection.dbapi_connection.cursor() as cursor:  # type: ignore[union-attr]
            cursor.execute(
                f"UPDATE {table.name} AS t SET {assignments} FROM unnest({arrays}) AS v({', '.join(map(quote, names))}) "
                f"WHERE t.{quote(key)} = v.{quote(key)}",
                [[row[c] for row in rows] for c in names],
            )
        return
    staging = f"_bulk_{table.name}"
    types = ", ".join(f"{quote(c)} {table.c[c].type.compile(connection.dialect)}" for c in names)
    with connection.connection.dbapi_connection.cursor() as cursor:  # type: ignore[union-attr]
        cursor.execute(f"CREATE TEMPORARY TABLE IF NOT EXISTS {staging} ({types}) ON COMMIT DELETE ROWS")
        with cursor.copy(f"COPY {staging} ({', '.join(quote(c) for c in [key, *columns])}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row([row[key], *(row[c] for c in columns)])
        assignments = ", ".join(f"{quote(c)} = s.{quote(c)}" for c in columns)
        cursor.execute(f"UPDATE {table.name} AS t SET {assignments} FROM {staging} AS s WHERE t.{quote(key)} = s.{quote(key)}")
        cursor.execute(f"TRUNCATE {staging}")


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
    cursor.execute("PRAGMA synchronous=FULL")  # a reading acknowledged survives power loss
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
    dbapi_connection.isolation_level = None  # transactions are begun by _sqlite_begin_immediate


def _sqlite_begin_immediate(connection: Connection) -> None:
    """Take SQLite's write lock when a transaction begins, not at its first write.

    A deferred transaction that reads and then writes fails at once (``SQLITE_BUSY``, no
    waiting) when another writer committed in between; beginning IMMEDIATE makes concurrent
    writers queue on the busy timeout instead. PostgreSQL needs none of this: row locks.
    """
    connection.exec_driver_sql("BEGIN IMMEDIATE")
