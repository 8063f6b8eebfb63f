"""site admins: a user may belong to one site

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 00:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("site_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key("fk_users_site_id", "sites", ["site_id"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_constraint("fk_users_site_id", type_="foreignkey")
        batch_op.drop_column("site_id")
