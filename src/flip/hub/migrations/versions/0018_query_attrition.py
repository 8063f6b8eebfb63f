"""attrition released with a Circe query's count: each step's count as the site released it

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-04 13:50:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("query_results", schema=None) as batch_op:
        batch_op.add_column(sa.Column("attrition", sa.Text(), nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("query_results", schema=None) as batch_op:
        batch_op.drop_column("attrition")
