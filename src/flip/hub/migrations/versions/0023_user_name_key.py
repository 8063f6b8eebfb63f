"""user names are unique ignoring case: each user's name, lowered, kept unique as `name_key`

Users whose names already differ only by case (twins, made before 0023) are kept: the
oldest of each twin set holds the key, the others none (NULL), so each still signs in by
the exact name, and no new user may take any spelling of it. The upgrade names the twins.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-05 14:00:00
"""

import logging

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("name_key", sa.String(length=100), nullable=True))
    users = sa.table("users", sa.column("id"), sa.column("name"), sa.column("name_key"))
    conn = op.get_bind()
    holders: dict[str, str] = {}
    for uid, name in conn.execute(sa.select(users.c.id, users.c.name).order_by(users.c.id)):
        key = name.lower()
        if key in holders:
            log.warning(
                "users %r and %r differ only by case: both keep signing in by their exact "
                "names; rename or revoke one",
                holders[key],
                name,
            )
            continue
        holders[key] = name
        conn.execute(sa.update(users).where(users.c.id == uid).values(name_key=key))
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.create_unique_constraint("uq_users_name_key", ["name_key"])


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_constraint("uq_users_name_key", type_="unique")
        batch_op.drop_column("name_key")
