"""Revoke and restore a user's access: every token, session and password login at once."""

from __future__ import annotations

from sqlalchemy import Connection, Select, delete, or_, select, update

from flip.hub import api_tokens, audit
from flip.hub.db import name_key, now, sessions, users


class NoSuchUser(LookupError):
    """No user has this id or name."""


def by_name(query: Select, name: str) -> Select:
    """`query` (over users) narrowed to the user called `name`: spelled so, else the one
    whose name differs only by case (the key holder, where twins from before 0023 remain)."""
    return (
        query.where(or_(users.c.name == name, users.c.name_key == name_key(name)))
        .order_by(users.c.name != name)
        .limit(1)
    )


def find_user(conn: Connection, user: int | str):
    """The user row by id or name (whatever its case), or NoSuchUser."""
    query = select(users)
    query = query.where(users.c.id == user) if isinstance(user, int) else by_name(query, user)
    row = conn.execute(query).first()
    if row is None:
        raise NoSuchUser(f"no user {user}")
    return row


def revoke(conn: Connection, user: int | str, actor: str) -> None:
    """End every credential of the user: all API tokens, all sessions and password login."""
    row = find_user(conn, user)
    conn.execute(update(users).where(users.c.id == row.id).values(revoked_at=now()))
    api_tokens.end_all(conn, row.id)
    conn.execute(delete(sessions).where(sessions.c.user_id == row.id))
    audit.append(conn, actor, "user.token.revoke", f"user:{row.name}")


def restore(conn: Connection, user: int | str, actor: str, days: int) -> tuple[int, str, str]:
    """Give a revoked user access again with one new API token ("restored") of `days`:
    (id, name, token). No token they held before comes back."""
    row = find_user(conn, user)
    api_tokens.end_all(conn, row.id)
    token = api_tokens.mint(conn, row.id, "restored", days).token
    conn.execute(update(users).where(users.c.id == row.id).values(revoked_at=None))
    audit.append(conn, actor, "user.restore", f"user:{row.name}", {"days": days})
    return row.id, row.name, token
