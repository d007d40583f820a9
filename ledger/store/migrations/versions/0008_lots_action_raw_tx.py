"""actions keep their signed transaction (write-ahead), so a restart sends the same one again

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-22 06:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("actions") as batch:
        batch.add_column(sa.Column("raw_tx", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("actions") as batch:
        batch.drop_column("raw_tx")
