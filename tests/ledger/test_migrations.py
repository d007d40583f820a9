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


def test_confirmed_batches_become_included_and_keep_their_data(db_url: str) -> None:
    """0005: the old "confirmed" (mined) state is "included"; the anchorer then decides finality."""
    from alembic import command
    from sqlalchemy import text

    from ledger.settings import normalise_db_url
    from ledger.store.db import alembic_config

    db = Database(normalise_db_url(db_url))
    with db.engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0004")
        conn.execute(
            text("INSERT INTO batches (\"index\", status, root, count, sealed_at, tx_hash, nonce, block_number) "
                 "VALUES (0, 'confirmed', :root, 3, CURRENT_TIMESTAMP, :tx, 7, 12), "
                 "(1, 'sealed', :root, 1, CURRENT_TIMESTAMP, NULL, NULL, NULL)"),  # fmt: skip
            {"root": b"\x01" * 32, "tx": "0x" + "ab" * 32},
        )
    db.migrate()
    with db.engine.connect() as conn:
        rows = conn.execute(text('SELECT "index", status, tx_hash, nonce, block_number, replacements FROM batches ORDER BY "index"')).all()
    assert [tuple(r) for r in rows] == [(0, "included", "0x" + "ab" * 32, 7, 12, 0), (1, "sealed", None, None, None, 0)]
    db.dispose()
