"""anchoring: included and final states, replaceable transactions, block hashes

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('batches', schema=None) as batch_op:
        batch_op.add_column(sa.Column('raw_tx', sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column('fee_cap', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('tip', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('sent_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('replacements', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('block_hash', sa.String(length=66), nullable=True))
        batch_op.add_column(sa.Column('final_at', sa.DateTime(), nullable=True))
    with op.batch_alter_table('batches', schema=None) as batch_op:
        batch_op.alter_column('replacements', server_default=None)
    # "confirmed" was "mined"; the anchorer now confirms finality (and fills block_hash) itself
    op.execute("UPDATE batches SET status = 'included' WHERE status = 'confirmed'")


def downgrade() -> None:
    op.execute("UPDATE batches SET status = 'confirmed' WHERE status IN ('included', 'final')")
    with op.batch_alter_table('batches', schema=None) as batch_op:
        batch_op.drop_column('final_at')
        batch_op.drop_column('block_hash')
        batch_op.drop_column('replacements')
        batch_op.drop_column('sent_at')
        batch_op.drop_column('tip')
        batch_op.drop_column('fee_cap')
        batch_op.drop_column('raw_tx')
