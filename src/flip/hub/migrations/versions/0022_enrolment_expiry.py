"""site enrolment tokens expire: a pending site's token stops working after its time

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-05 13:50:00
"""

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

#: Days a token made before 0022 (which had no end) still works from the upgrade.
GRACE_DAYS = 7


def upgrade() -> None:
    with op.batch_alter_table("sites", schema=None) as batch_op:
        batch_op.add_column(sa.Column("enrolment_expires_at", sa.DateTime(), nullable=True))
    sites = sa.table("sites", sa.column("enrolment_hash"), sa.column("enrolment_expires_at"))
    ends = datetime.now(UTC).replace(tzinfo=None) + timedelta(days=GRACE_DAYS)
    op.get_bind().execute(
        sa.update(sites)
        .where(sites.c.enrolment_hash.is_not(None))
        .values(enrolment_expires_at=ends)
    )


def downgrade() -> None:
    with op.batch_alter_table("sites", schema=None) as batch_op:
        batch_op.drop_column("enrolment_expires_at")
