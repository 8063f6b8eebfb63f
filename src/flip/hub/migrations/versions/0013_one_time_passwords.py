"""one-time passwords: a password the web app made for an invited or reset user works
for one web sign-in, which must choose a new one; the API refuses it

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 16:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("password_one_time", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("password_one_time")
