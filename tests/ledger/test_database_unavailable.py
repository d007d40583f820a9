"""Which database errors mean "unavailable, try again" (503 database_unavailable, a loop pausing)
and which are bugs (500, a traceback in the log)."""

from __future__ import annotations

import sqlite3

import psycopg
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from ledger.store.db import database_unavailable
from tests.conftest import free_port


def test_a_server_that_does_not_answer_is_unavailable() -> None:
    engine = create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/x", connect_args={"connect_timeout": 2})
    with pytest.raises(OperationalError) as caught:
        engine.connect()
    assert database_unavailable(caught.value)
    assert database_unavailable(caught.value.orig)  # as psycopg raises it, e.g. from a COPY
    engine.dispose()


def test_a_busy_sqlite_is_unavailable_but_a_missing_table_is_a_bug(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert database_unavailable(OperationalError("BEGIN", {}, sqlite3.OperationalError("database is locked")))
    engine = create_engine(f"sqlite:///{tmp_path / 'x.sqlite3'}")
    with engine.connect() as connection, pytest.raises(OperationalError) as caught:
        connection.execute(text("SELECT * FROM readings"))
    assert not database_unavailable(caught.value)  # no such table: a wrong schema, not an outage
    engine.dispose()


def test_refusals_of_the_statement_are_not_outages() -> None:
    assert not database_unavailable(IntegrityError("INSERT", {}, psycopg.errors.UniqueViolation("duplicate key")))
    assert not database_unavailable(ProgrammingError("SELECT", {}, psycopg.errors.UndefinedTable("no such table")))
    assert not database_unavailable(ValueError("not a database error"))


def test_the_api_answers_an_outage_503_with_retry_after() -> None:
    """One answer for an outage, whichever process met it (the route's, or an ingestion worker's)."""
    import json

    import psycopg

    from api.errors import _database_error
    from ledger.store.db import database_unavailable_error

    response = _database_error(None, psycopg.OperationalError("connection refused"))  # type: ignore[arg-type]
    error = database_unavailable_error()
    assert response.status_code == 503 and response.headers["Retry-After"] == "2" == str(error.retry_after)
    assert json.loads(response.body)["error"] == {"code": "database_unavailable", "message": error.message}
    assert "send the same request again" in error.message
