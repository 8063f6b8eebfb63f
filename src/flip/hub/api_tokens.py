"""Users' named API tokens (a laptop, a CI job): minted with a lifetime and shown once,
stored as their hash, listed by prefix, ended one at a time or all at once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, insert, select
from sqlalchemy.exc import IntegrityError

from flip.hub.auth import new_token, token_hash
from flip.hub.db import api_tokens, now

#: How many of an API token's first characters the hub keeps to name it.
PREFIX_LENGTH = 12


class TakenName(ValueError):
    """The user already has a token of this name."""


class NoSuchToken(LookupError):
    """The user has no token with this id."""


@dataclass(frozen=True)
class Minted:
    """A token just made: the only time the hub has `token` itself."""

    id: int
    name: str
    token: str
    prefix: str
    expires_at: datetime


def mint(
    conn: Connection, user_id: int, name: str, days: int, not_after: datetime | None = None
) -> Minted:
    """A new API token for the user named `name`, living `days` but ending by `not_after` if
    given (a token made with a token outlives it not); TakenName if the user has one of that
    name."""
    token, made = new_token("flip_u"), now()
    ends = made + timedelta(days=days)
    values = {
        "user_id": user_id,
        "name": name,
        "token_hash": token_hash(token),
        "prefix": token[:PREFIX_LENGTH],
        "created_at": made,
        "expires_at": ends if not_after is None else min(ends, not_after),
    }
    try:
        with conn.begin_nested():
            tid = conn.execute(insert(api_tokens).values(values)).inserted_primary_key[0]
    except IntegrityError:
        raise TakenName(
            f"you already have a token named {name}: revoke it or pick another name"
        ) from None
    return Minted(tid, name, token, values["prefix"], values["expires_at"])


def listed(conn: Connection, user_id: int) -> list[dict[str, Any]]:
    """The user's tokens, oldest first: id, name, prefix, dates and state (active or expired)."""
    rows = conn.execute(
        select(
            api_tokens.c.id,
            api_tokens.c.name,
            api_tokens.c.prefix,
            api_tokens.c.created_at,
            api_tokens.c.expires_at,
        )
        .where(api_tokens.c.user_id == user_id)
        .order_by(api_tokens.c.id)
    )
    at = now()
    return [
        dict(r._mapping)
        | {"state": "expired" if r.expires_at is not None and r.expires_at < at else "active"}
        for r in rows
    ]


def end(conn: Connection, user_id: int, token_id: int) -> str:
    """End one of the user's tokens now: its name; NoSuchToken if the user has none of that id."""
    name = conn.execute(
        select(api_tokens.c.name).where(
            api_tokens.c.id == token_id, api_tokens.c.user_id == user_id
        )
    ).scalar()
    if name is None:
        raise NoSuchToken(f"you have no API token {token_id}")
    conn.execute(delete(api_tokens).where(api_tokens.c.id == token_id))
    return name


def end_all(conn: Connection, user_id: int) -> None:
    """End every API token of the user now."""
    conn.execute(delete(api_tokens).where(api_tokens.c.user_id == user_id))


def newest_hash(user_id: int):
    """A scalar query: the hash of the user's newest token (what a pending TOTP enrolment is
    bound to, with the password), or NULL."""
    return (
        select(api_tokens.c.token_hash)
        .where(api_tokens.c.user_id == user_id)
        .order_by(api_tokens.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )
