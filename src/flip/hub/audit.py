"""The hub's append-only, hash-chained audit log."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
from sqlalchemy import Connection, Engine, event, insert, select, text

from flip.hashchain import GENESIS, entry_hash
from flip.hub.db import audit

#: The advisory lock key that serialises audit appends on PostgreSQL.
AUDIT_LOCK = 0x464C4950  # "FLIP"
#: The fields an entry's hash seals, and the entries a check reads at a time.
_FIELDS = ("seq", "at", "actor", "action", "target", "detail")
_BATCH = 1000
#: Where a connection keeps the chain's head for the rest of its transaction.
_HEAD = "flip_audit_head"


def append(
    conn: Connection, actor: str, action: str, target: str, detail: dict | None = None
) -> None:
    """Seal one entry onto the chain, in the caller's transaction.

    On PostgreSQL a transaction-scoped advisory lock keeps two hub processes from
    sealing the same seq; SQLite's writer lock does that there.
    """
    seq, previous = _head(conn)
    seq += 1
    entry = {
        "seq": seq,
        "at": datetime.now(UTC).isoformat(timespec="microseconds"),
        "actor": actor,
        "action": action,
        "target": target,
        "detail": orjson.dumps(detail or {}, option=orjson.OPT_SORT_KEYS).decode(),
    }
    sealed = entry_hash(previous, entry)
    conn.execute(insert(audit).values(**entry, hash=sealed))
    conn.info[_HEAD] = (conn.get_transaction(), seq, sealed)


def _head(conn: Connection) -> tuple[int, str]:
    """(seq, hash) of the newest entry: read (under the lock) once per transaction.

    The writer commits many appends in one transaction; once the first has locked
    and read the head, the others take it from the connection, a round trip saved
    each on PostgreSQL. A rolled-back savepoint forgets it (see `_forget_head`).
    """
    kept = conn.info.get(_HEAD)
    if kept is not None and kept[0] is conn.get_transaction():
        return kept[1], kept[2]
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": AUDIT_LOCK})
    last = conn.execute(
        select(audit.c.seq, audit.c.hash).order_by(audit.c.seq.desc()).limit(1)
    ).first()
    return (last[0], last[1]) if last else (0, GENESIS)


@event.listens_for(Engine, "rollback_savepoint")
def _forget_head(conn: Connection, name: str, context: object) -> None:
    conn.info.pop(_HEAD, None)


def verify(conn: Connection) -> int | None:
    """The seq of the first entry edited or removed, or None when the chain holds."""
    return first_break_after(conn, 0, GENESIS)[0]


def first_break_after(conn: Connection, seq: int, digest: str) -> tuple[int | None, int, str]:
    """Check entry `seq`, which must still be sealed with hash `digest`, and every entry after
    it (0 and GENESIS: the whole chain): (the seq of the first edited or removed, or None;
    the seq and hash of the newest entry checked). Rows are read a batch at a time."""
    previous, checked = digest, seq
    if seq:
        before = conn.execute(select(audit.c.hash).where(audit.c.seq == seq - 1)).scalar()
        if seq > 1 and before is None:
            return seq, seq, digest
        previous, seq = (GENESIS if seq == 1 else before), seq - 1
    while True:
        batch = conn.execute(
            select(audit).where(audit.c.seq > seq).order_by(audit.c.seq).limit(_BATCH)
        ).all()
        for row in batch:
            if checked and row.seq == checked and row.hash != digest:
                return int(row.seq), checked, digest
            if entry_hash(previous, {k: getattr(row, k) for k in _FIELDS}) != row.hash:
                return int(row.seq), checked, digest
            seq, previous = int(row.seq), row.hash
        if len(batch) < _BATCH:
            if seq < checked:  # the chain now ends before the entry checked last
                return checked, checked, digest
            return None, seq, previous
