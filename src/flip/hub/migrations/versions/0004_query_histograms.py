"""coarse histograms released with query counts

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 00:35:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("query_results", schema=None) as batch_op:
        batch_op.add_column(sa.Column("histograms", sa.Text(), nullable=False, server_default="{}"))


def downgrade() -> None:
    with op.batch_alter_table("query_results", schema=None) as batch_op:
        batch_op.drop_column("histograms")
