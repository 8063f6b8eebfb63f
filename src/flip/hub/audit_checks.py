"""Checks of the hub's audit chain that start where the last one ended: each re-reads only
the entries appended since (and the entry it ended at, which must keep its hash), so asking
often costs little. A check of the whole chain runs on request, at the first check after a
start, and once the last whole check is older than `full_every`."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from sqlalchemy import Connection

from flip.hashchain import GENESIS
from flip.hub.audit import first_break_after

#: Seconds an incremental check may lean on the last check of the whole chain.
FULL_EVERY = 24 * 3600.0


class AuditChecks:
    """The newest entry a check found chained (kept in this process only, so no one with the
    database alone can move it), and when the whole chain was last checked."""

    def __init__(self, full_every: float = FULL_EVERY, clock: Callable[[], float] = time.time):
        self.full_every = full_every
        self.clock = clock
        self._lock = threading.Lock()
        self._seq, self._hash, self._full_at = 0, GENESIS, None

    def check(self, conn: Connection, full: bool = False) -> dict[str, object]:
        """`broken_at` (the first entry edited or removed, or None), whether the check was
        `full`, and the entries it read (`from`, `to`); a chain that holds moves the mark."""
        started = self.clock()
        with self._lock:
            seq, digest, full_at = self._seq, self._hash, self._full_at
        whole = full or full_at is None or started - full_at > self.full_every
        if whole:
            seq, digest = 0, GENESIS
        broken, last, head = first_break_after(conn, seq, digest)
        if broken is None:
            with self._lock:
                if last >= self._seq:
                    self._seq, self._hash = last, head
                if whole:
                    self._full_at = max(self._full_at or started, started)
        return {"broken_at": broken, "full": whole, "from": seq + 1, "to": last}
