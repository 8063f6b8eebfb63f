"""the API token's first characters and when it was made, so the account page can name it

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-04 17:50:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("token_prefix", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("token_created_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("token_created_at")
        batch_op.drop_column("token_prefix")
