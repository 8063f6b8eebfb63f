"""Requests for an account from the public form: kept until an admin approves or declines."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from flip.hub import audit
from flip.hub.db import access_requests, now, users

#: Pending requests the hub keeps at most: past this the form asks people to wait.
MAX_PENDING = 500


class Refused(ValueError):
    """The request cannot be taken or decided; the message says why."""


class Taken(Refused):
    """The name is a user's, or the name or email is already asked for or given an account."""


#: What the form says of a name or email in use: the same for either, and for a user, a
#: request waiting or one approved, so it tells no more than that the pair is not free.
TAKEN = (
    "that user name or email is already in use or waiting for an admin: if it is yours, "
    "sign in (an admin can reset a forgotten password); otherwise choose another user name"
)


def submit(conn: Connection, fields: dict[str, str]) -> int:
    """Keep a request (name, email, organisation, reason). Taken when the name is a user's or
    the name or email already waits or was approved; Refused when the queue is full."""
    table = access_requests
    pending = table.c.status == "pending"
    if conn.execute(select(func.count()).where(pending)).scalar_one() >= MAX_PENDING:
        raise Refused("the hub has too many requests waiting: try again later")
    name, email = fields["name"].lower(), fields["email"].lower()
    user = select(users.c.id).where(func.lower(users.c.name) == name)
    asked = select(table.c.id).where(
        table.c.status.in_(("pending", "approved")),
        (func.lower(table.c.name) == name) | (func.lower(table.c.email) == email),
    )
    if conn.execute(user).first() or conn.execute(asked).first():
        raise Taken(TAKEN)
    rid = conn.execute(
        insert(table).values(**fields, status="pending", note="")
    ).inserted_primary_key[0]
    audit.append(conn, "public", "access.request", f"request:{rid}", {"name": fields["name"]})
    return int(rid)


def listed(conn: Connection, decided: int = 20) -> dict[str, list[dict[str, Any]]]:
    """The pending requests, oldest first, and the `decided` most recently decided."""
    table = access_requests
    waiting = conn.execute(select(table).where(table.c.status == "pending").order_by(table.c.id))
    done = conn.execute(
        select(table)
        .where(table.c.status != "pending")
        .order_by(table.c.decided_at.desc())
        .limit(decided)
    )
    return {
        "pending": [dict(r._mapping) for r in waiting],
        "decided": [dict(r._mapping) for r in done],
    }


def pending(conn: Connection, request_id: int):
    """The pending request `request_id`, or Refused naming why not."""
    row = conn.execute(select(access_requests).where(access_requests.c.id == request_id)).first()
    if row is None:
        raise Refused(f"no access request {request_id}")
    if row.status != "pending":
        raise Refused(f"access request {request_id} is already {row.status}")
    return row


def decide(conn: Connection, request_id: int, decision: str, actor: str, note: str = "") -> None:
    """Mark a pending request approved or declined (with a note), audited."""
    row = pending(conn, request_id)
    conn.execute(
        update(access_requests)
        .where(access_requests.c.id == request_id)
        .values(status=decision, decided_by=actor, decided_at=now(), note=note)
    )
    detail = {"name": row.name} | ({"note": note} if note else {})
    audit.append(conn, actor, f"access.{decision}", f"request:{request_id}", detail)
