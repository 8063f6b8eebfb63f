"""how long each round of an analysis waits for the sites asked

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04 04:20:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("analyses") as batch:
        batch.add_column(sa.Column("timeout", sa.Integer(), nullable=False, server_default="86400"))


def downgrade() -> None:
    with op.batch_alter_table("analyses") as batch:
        batch.drop_column("timeout")
