"""readings: no foreign keys on device_id and key_id (checked by ingestion under the device lock;
PostgreSQL's row-by-row checks were a third of its cost per reading)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

# SQLite keeps these constraints unnamed: batch mode reflects them under this convention's names.
_NAMES = {"fk": "fk_%(table_name)s_%(column_0_name)s"}
_FOREIGN_KEYS = (("device_id", "devices", "id"), ("key_id", "device_keys", "id"))


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for column, _, _ in _FOREIGN_KEYS:
            op.drop_constraint(f"readings_{column}_fkey", "readings", type_="foreignkey")
        return
    with op.batch_alter_table('readings', naming_convention=_NAMES, recreate="always") as batch_op:
        for column, _, _ in _FOREIGN_KEYS:
            batch_op.drop_constraint(f"fk_readings_{column}", type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table('readings', schema=None) as batch_op:
        for column, table, remote in _FOREIGN_KEYS:
            batch_op.create_foreign_key(f"readings_{column}_fkey", table, [column], [remote])
