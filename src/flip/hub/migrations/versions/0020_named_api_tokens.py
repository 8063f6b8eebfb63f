"""named API tokens: each user may hold several (a laptop, a CI job); each user's one token
moves into api_tokens as its hash, named "default"

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-04 18:10:00
"""

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

#: The users columns that held the one token each user had until 0020.
_OLD = (
    sa.Column("token_hash", sa.String(length=64), nullable=True),
    sa.Column("token_expires_at", sa.DateTime(), nullable=True),
    sa.Column("token_prefix", sa.String(length=16), nullable=True),
    sa.Column("token_created_at", sa.DateTime(), nullable=True),
)


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=True),
        sa.Column("expires_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_api_tokens_user_id"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
        sa.UniqueConstraint("user_id", "name", name="uq_api_tokens_user_name"),
    )
    # Hashes only: the hub never had the tokens. A revoked user's token ended with them.
    op.execute(
        "INSERT INTO api_tokens (user_id, name, token_hash, prefix, created_at, expires_at)"
        " SELECT id, 'default', token_hash, token_prefix, token_created_at, token_expires_at"
        " FROM users WHERE revoked_at IS NULL"
    )
    with op.batch_alter_table("users", schema=None) as batch_op:
        for column in _OLD:
            batch_op.drop_column(column.name)


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        for column in _OLD:
            batch_op.add_column(column.copy())
    users = sa.table("users", sa.column("id"), *(sa.column(c.name) for c in _OLD))
    tokens = sa.table(
        "api_tokens",
        *(sa.column(c) for c in ("id", "user_id", "token_hash", "prefix")),
        sa.column("created_at"),
        sa.column("expires_at"),
    )
    conn = op.get_bind()
    newest = {row.user_id: row for row in conn.execute(sa.select(tokens).order_by(tokens.c.id))}
    for (uid,) in conn.execute(sa.select(users.c.id)):
        row = newest.get(uid)
        values = (
            {"token_hash": secrets.token_hex(32)}  # no token: one nobody holds
            if row is None
            else {
                "token_hash": row.token_hash,
                "token_prefix": row.prefix,
                "token_created_at": row.created_at,
                "token_expires_at": row.expires_at,
            }
        )
        conn.execute(sa.update(users).where(users.c.id == uid).values(**values))
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.alter_column("token_hash", existing_type=sa.String(length=64), nullable=False)
        batch_op.create_unique_constraint("uq_users_token_hash", ["token_hash"])
    op.drop_table("api_tokens")
