"""Users' named API tokens (a laptop, a CI job): minted with a lifetime and shown once,
stored as their hash, listed by prefix, ended one at a time or all at once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, func, insert, or_, select
from sqlalchemy.exc import IntegrityError

from flip.hub.auth import new_token, token_hash
from flip.hub.db import api_tokens, now

#: How many of an API token's first characters the hub keeps to name it.
PREFIX_LENGTH = 12
#: How long an expired token stays listed (as expired) before the hub forgets it.
EXPIRED_KEPT = timedelta(days=30)


class TakenName(ValueError):
    """The user already has a token of this name."""


class NoSuchToken(LookupError):
    """The user has no token with this id."""


class TooManyTokens(ValueError):
    """The user already holds as many live tokens as the hub allows."""


@dataclass(frozen=True)
class Minted:
    """A token just made: the only time the hub has `token` itself."""

    id: int
    name: str
    token: str
    prefix: str
    expires_at: datetime


def mint(
    conn: Connection,
    user_id: int,
    name: str,
    days: int,
    not_after: datetime | None = None,
    most: int | None = None,
) -> Minted:
    """A new API token for the user named `name`, living `days` but ending by `not_after` if
    given (a token made with a token outlives it not). TakenName if the user has a live one
    of that name, TooManyTokens if they hold `most` live ones; expired tokens of that name,
    and those expired longer than EXPIRED_KEPT, are forgotten first."""
    token, made = new_token("flip_u"), now()
    _forget_expired(conn, user_id, name, made)
    if most is not None and _live(conn, user_id, made) >= most:
        raise TooManyTokens(
            f"you hold {most} live API tokens, this hub's limit: revoke one you no longer use"
        )
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


def _forget_expired(conn: Connection, user_id: int, name: str, at: datetime) -> None:
    expired = api_tokens.c.expires_at < at
    conn.execute(
        delete(api_tokens).where(
            api_tokens.c.user_id == user_id,
            or_(
                expired & (api_tokens.c.name == name),
                api_tokens.c.expires_at < at - EXPIRED_KEPT,
            ),
        )
    )


def _live(conn: Connection, user_id: int, at: datetime) -> int:
    return conn.execute(
        select(func.count()).where(
            api_tokens.c.user_id == user_id,
            or_(api_tokens.c.expires_at.is_(None), api_tokens.c.expires_at >= at),
        )
    ).scalar_one()


def listed(conn: Connection, user_id: int) -> list[dict[str, Any]]:
    """The user's tokens, oldest first: id, name, prefix, dates (made, ends, last used, to the
    hour) and state (active or expired)."""
    rows = conn.execute(
        select(
            api_tokens.c.id,
            api_tokens.c.name,
            api_tokens.c.prefix,
            api_tokens.c.created_at,
            api_tokens.c.expires_at,
            api_tokens.c.last_used_at,
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
