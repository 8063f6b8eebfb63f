"""Issue 19 item 13: a killed `flip site ingest` leaves no reader process behind, and the next
ingest marks the killed run failed instead of leaving it `running` forever."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from flip.data.cdm import schema
from flip.data.cdm.store import open_store
from flip.data.ingest.write import Writer
from flip.synth import generate_site
from flip.synth.export import export_site
from tests.conftest import small_profile
from tests.e2e.processes import FLIP, cli, wait_for


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text(encoding="ascii").rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


def _runs(store_path: Path) -> list[tuple[str, str]]:
    """(source system, status) of each ingest run in the store."""
    store = open_store(store_path, read_only=True)
    try:
        with store.connect() as conn:
            run = schema.ingest_run
            rows = conn.execute(select(run.c.source_system, run.c.status)).all()
    finally:
        store.close()
    return sorted((r[0], r[1]) for r in rows)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")
def test_a_killed_ingest_leaves_no_reader_and_the_next_run_marks_it_failed(tmp_path):
    profile = small_profile("csv", 3000)
    export = export_site(profile, generate_site(profile, seed=1), tmp_path / "export")
    store = tmp_path / "store.duckdb"
    cli("site", "init", "--store", str(store))

    ingest = subprocess.Popen(
        [*FLIP, "site", "ingest", "csv", str(export), "--store", str(store), "--system", "big"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    readers: list[int] = []
    try:
        # A CSV ingest opens its run, then forks its reader on the first record it takes.
        readers = wait_for(lambda: _children(ingest.pid), "the ingest's reader process", 120)
        time.sleep(0.2)  # mid-run: on an idle machine 800 persons loaded within a second
        assert ingest.poll() is None, "the ingest should still be running"
        os.kill(ingest.pid, signal.SIGKILL)
        ingest.wait(timeout=30)
        wait_for(lambda: all(_gone(pid) for pid in readers), "the reader to die with it", 10)
    finally:
        for pid in readers:
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)
        if ingest.poll() is None:
            ingest.kill()
            ingest.wait()

    assert _runs(store) == [("big", "running")]
    small = small_profile("csv", 10, name="small")
    other = export_site(small, generate_site(small, seed=2), tmp_path / "small")
    cli("site", "ingest", "csv", str(other), "--store", str(store), "--system", "s")
    assert _runs(store) == [("big", "failed"), ("s", "completed")]


def test_the_next_run_leaves_runs_of_live_processes_and_of_other_hosts_running(tmp_path):
    store = open_store(tmp_path / "store.duckdb")
    store.create()
    finished = subprocess.Popen(["true"])
    finished.wait()
    here = socket.gethostname()
    with store.begin() as conn:
        for number, (system, host, pid) in enumerate(
            (
                ("live", here, os.getpid()),
                ("elsewhere", "another-host", finished.pid),
                ("dead", here, finished.pid),
            )
        ):
            conn.execute(
                insert(schema.ingest_run).values(
                    ingest_run_id=number + 1,
                    source_kind="csv",
                    source_uri=system,
                    source_system=system,
                    started_at=datetime.now(UTC).replace(tzinfo=None),
                    status="running",
                    host=host,
                    pid=pid,
                )
            )
    Writer(store, "next").open_run("csv", "next")
    store.close()
    assert _runs(tmp_path / "store.duckdb") == [
        ("dead", "failed"),
        ("elsewhere", "running"),
        ("live", "running"),
        ("next", "running"),
    ]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")
def test_a_run_whose_process_id_a_later_process_took_is_marked_failed(tmp_path):
    """A restarted container runs its new ingest under the process id the killed one had."""
    store = open_store(tmp_path / "store.duckdb")
    store.create()
    with store.begin() as conn:
        conn.execute(
            insert(schema.ingest_run).values(
                ingest_run_id=1,
                source_kind="csv",
                source_uri="killed",
                source_system="killed",
                started_at=datetime(2020, 1, 1),  # long before this process began
                status="running",
                host=socket.gethostname(),
                pid=os.getpid(),
            )
        )
    Writer(store, "next").open_run("csv", "next")
    store.close()
    assert _runs(tmp_path / "store.duckdb") == [("killed", "failed"), ("next", "running")]
