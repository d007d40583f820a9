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


def test_readings_lose_their_foreign_keys_and_keep_their_rows(db_url: str) -> None:
    """0011: readings' device_id and key_id carry no foreign key (ingestion checks them under
    the device lock); the rows and every other constraint stay."""
    from alembic import command
    from sqlalchemy import text

    from ledger.settings import normalise_db_url
    from ledger.store.db import alembic_config

    db = Database(normalise_db_url(db_url))
    with db.engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0010")
        assert {fk["referred_table"] for fk in inspect(conn).get_foreign_keys("readings")} == {"devices", "device_keys", "batches"}
        conn.execute(text("INSERT INTO organisations (id, name, role, created_at) VALUES ('o', 'O', 'warehouse', CURRENT_TIMESTAMP)"))
        conn.execute(text("INSERT INTO devices (id, organisation_id, kind, created_at) VALUES ('d1', 'o', 'heartbeat', CURRENT_TIMESTAMP)"))
        key = conn.execute(text("INSERT INTO device_keys (device_id, alg, public_key, fingerprint, valid_from) "
                                "VALUES ('d1', 'ES256', 'pem', 'fp', CURRENT_TIMESTAMP) RETURNING id")).scalar_one()  # fmt: skip
        conn.execute(
            text("INSERT INTO readings (id, device_id, key_id, seq, ts, kind, envelope, salt, prev_mismatch, received_at) "
                 "VALUES (:id, 'd1', :key, 1, CURRENT_TIMESTAMP, 'heartbeat', '{}', :salt, false, CURRENT_TIMESTAMP)"),  # fmt: skip
            {"id": "ab" * 32, "key": key, "salt": b"\x02" * 32},
        )
    db.migrate()
    with db.engine.connect() as conn:
        assert [fk["referred_table"] for fk in inspect(conn).get_foreign_keys("readings")] == ["batches"]
        assert conn.execute(text("SELECT id, device_id, seq FROM readings")).all() == [("ab" * 32, "d1", 1)]
        unique = {tuple(u["column_names"]) for u in inspect(conn).get_unique_constraints("readings")}
        assert {("id",), ("device_id", "seq")} <= unique
    db.dispose()
