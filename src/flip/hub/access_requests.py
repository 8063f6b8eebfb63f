"""Requests for an account from the public form: kept until an admin approves or declines."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from flip.hub import audit
from flip.hub.db import access_requests, now

#: Pending requests the hub keeps at most: past this the form asks people to wait.
MAX_PENDING = 500


class Refused(ValueError):
    """The request cannot be taken or decided; the message says why."""


def submit(conn: Connection, fields: dict[str, str]) -> int | None:
    """Keep a request (name, email, organisation, reason); None when the same name already
    waits (the answer is the same either way). Refused when the queue is full."""
    pending = access_requests.c.status == "pending"
    if conn.execute(select(func.count()).where(pending)).scalar_one() >= MAX_PENDING:
        raise Refused("the hub has too many requests waiting: try again later")
    if conn.execute(
        select(access_requests.c.id).where(pending, access_requests.c.name == fields["name"])
    ).first():
        return None
    rid = conn.execute(
        insert(access_requests).values(**fields, status="pending", note="")
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
