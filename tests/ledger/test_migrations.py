"""The Alembic migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from ledger.store.db import Database
from ledger.store.models import Base


def test_migrations_match_models(db_url: str) -> None:
    from ledger.settings import normalise_db_url

    db = Database(normalise_db_url(db_url))
    db.migrate()
    db.migrate()  # idempotent: a second start changes nothing
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == [], diff
        tables = set(inspect(conn).get_table_names())
    assert {"readings", "devices", "device_keys", "batches", "organisations", "api_keys", "alembic_version"} <= tables
    db.dispose()
