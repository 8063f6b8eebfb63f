"""Ingest runs left `running` by a process that died (killed, out of memory, power cut).

Each run records the host and process id that run it; the next run on the same host marks
every `running` run whose process is gone as `failed`, or whose process id now belongs to
a process started after the run (a restarted container gives its new ingest the id the
killed one had). What such a run committed stays (each batch committed whole); running the
ingest again completes it.
"""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime, timedelta
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


#: How much later than a run's start its process may seem to start (/proc's boot time is
#: whole seconds).
_CLOCK_SLACK = timedelta(seconds=2)


def started_at(pid: int) -> datetime | None:
    """When process `pid` started (UTC, naive as ingest_run keeps times); None where /proc
    does not say."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
        boot = next(
            int(line.split()[1])
            for line in Path("/proc/stat").read_text(encoding="ascii").splitlines()
            if line.startswith("btime ")
        )
        ticks = int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError, StopIteration):
        return None
    return datetime.fromtimestamp(boot + ticks, UTC).replace(tzinfo=None)


def _runs_it(pid: int, run_started: datetime) -> bool:
    """Whether process `pid` may be the one that started a run at `run_started`."""
    if not alive(pid):
        return False
    began = started_at(pid)
    return began is None or began <= run_started + _CLOCK_SLACK


def fail_stale_runs(conn: Connection) -> list[int]:
    """Mark as failed every running run of this host whose process is gone (its end time
    unknown, left empty); their ids."""
    run = schema.ingest_run
    rows = conn.execute(
        select(run.c.ingest_run_id, run.c.pid, run.c.started_at).where(
            run.c.status == "running",
            run.c.host == socket.gethostname(),
            run.c.pid > 0,
        )
    ).all()
    stale = [row.ingest_run_id for row in rows if not _runs_it(int(row.pid), row.started_at)]
    if stale:
        conn.execute(update(run).where(run.c.ingest_run_id.in_(stale)).values(status="failed"))
    return stale
