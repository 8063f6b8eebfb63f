"""Revoke and restore a user's access: every token, session and password login at once."""

from __future__ import annotations

from sqlalchemy import Connection, delete, select, update

from flip.hub import audit
from flip.hub.auth import new_token, token_hash, user_token_columns
from flip.hub.db import now, sessions, users


class NoSuchUser(LookupError):
    """No user has this id or name."""


def find_user(conn: Connection, user: int | str):
    """The user row by id or name, or NoSuchUser."""
    column = users.c.id if isinstance(user, int) else users.c.name
    row = conn.execute(select(users).where(column == user)).first()
    if row is None:
        raise NoSuchUser(f"no user {user}")
    return row


def revoke(conn: Connection, user: int | str, actor: str) -> None:
    """End every credential of the user: the API token, all sessions and password login."""
    row = find_user(conn, user)
    conn.execute(
        update(users)
        .where(users.c.id == row.id)
        .values(
            token_hash=token_hash(new_token("revoked")), token_expires_at=now(), revoked_at=now()
        )
    )
    conn.execute(delete(sessions).where(sessions.c.user_id == row.id))
    audit.append(conn, actor, "user.token.revoke", f"user:{row.name}")


def restore(conn: Connection, user: int | str, actor: str, days: int) -> tuple[int, str, str]:
    """Give a revoked user access again with a new API token of `days`: (id, name, token)."""
    row = find_user(conn, user)
    token = new_token("flip_u")
    conn.execute(
        update(users)
        .where(users.c.id == row.id)
        .values(**user_token_columns(token, days), revoked_at=None)
    )
    audit.append(conn, actor, "user.restore", f"user:{row.name}", {"days": days})
    return row.id, row.name, token


def end_token(conn: Connection, user_id: int, actor: str) -> None:
    """End the user's API token alone (their password sign-in goes on working)."""
    row = find_user(conn, user_id)
    conn.execute(
        update(users)
        .where(users.c.id == row.id)
        .values(token_hash=token_hash(new_token("ended")), token_expires_at=now())
    )
    audit.append(conn, actor, "user.token.end", f"user:{row.name}")
