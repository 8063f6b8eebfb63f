"""Ingest runs left `running` by a process that died (killed, out of memory, power cut).

Each run records the host and process id that run it; the next run on the same host marks
every `running` run whose process is gone as `failed`. What such a run committed stays
(each batch committed whole); running the ingest again completes it.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from sqlalchemy import Connection, select, update

from flip.data.cdm import schema


def this_process() -> dict[str, object]:
    """The host and process id an ingest run records."""
    return {"host": socket.gethostname(), "pid": os.getpid()}


def alive(pid: int) -> bool:
    """Whether process `pid` runs on this host (a zombie, dead but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    stat = Path(f"/proc/{pid}/stat")
    try:
        state = stat.read_text(encoding="ascii").rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):  # no /proc here: kill(0) is all we know
        return True
    return state not in ("Z", "X")


def fail_stale_runs(conn: Connection) -> list[int]:
    """Mark as failed every running run of this host whose process is gone (its end time
    unknown, left empty); their ids."""
    run = schema.ingest_run
    rows = conn.execute(
        select(run.c.ingest_run_id, run.c.pid).where(
            run.c.status == "running",
            run.c.host == socket.gethostname(),
            run.c.pid > 0,
        )
    ).all()
    stale = [row.ingest_run_id for row in rows if not alive(int(row.pid))]
    if stale:
        conn.execute(update(run).where(run.c.ingest_run_id.in_(stale)).values(status="failed"))
    return stale
