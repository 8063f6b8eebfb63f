"""one-time passwords expire: one an admin made stops working after its time

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-05 14:05:00
"""

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None

#: Days a one-time password made before 0024 (which had no end) still works from the upgrade.
GRACE_DAYS = 7


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("password_expires_at", sa.DateTime(), nullable=True))
    users = sa.table("users", sa.column("password_one_time"), sa.column("password_expires_at"))
    ends = datetime.now(UTC).replace(tzinfo=None) + timedelta(days=GRACE_DAYS)
    op.get_bind().execute(
        sa.update(users).where(users.c.password_one_time.is_(True)).values(password_expires_at=ends)
    )


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("password_expires_at")
