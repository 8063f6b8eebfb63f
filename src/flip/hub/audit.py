"""The hub's append-only, hash-chained audit log."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
from sqlalchemy import Connection, insert, select, text

from flip.hashchain import GENESIS, entry_hash, first_break
from flip.hub.db import audit

#: The advisory lock key that serialises audit appends on PostgreSQL.
AUDIT_LOCK = 0x464C4950  # "FLIP"


def append(
    conn: Connection, actor: str, action: str, target: str, detail: dict | None = None
) -> None:
    """Seal one entry onto the chain, in the caller's transaction.

    On PostgreSQL a transaction-scoped advisory lock keeps two hub processes from
    sealing the same seq; SQLite's writer lock does that there.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": AUDIT_LOCK})
    last = conn.execute(
        select(audit.c.seq, audit.c.hash).order_by(audit.c.seq.desc()).limit(1)
    ).first()
    seq, previous = (last[0] + 1, last[1]) if last else (1, GENESIS)
    entry = {
        "seq": seq,
        "at": datetime.now(UTC).isoformat(timespec="microseconds"),
        "actor": actor,
        "action": action,
        "target": target,
        "detail": orjson.dumps(detail or {}, option=orjson.OPT_SORT_KEYS).decode(),
    }
    conn.execute(insert(audit).values(**entry, hash=entry_hash(previous, entry)))


def verify(conn: Connection) -> int | None:
    """The seq of the first entry edited or removed, or None when the chain holds."""
    rows = [dict(r._mapping) for r in conn.execute(select(audit).order_by(audit.c.seq))]
    fields = ("seq", "at", "actor", "action", "target", "detail")
    index = first_break([({k: r[k] for k in fields}, r["hash"]) for r in rows])
    return None if index is None else int(rows[index]["seq"])
