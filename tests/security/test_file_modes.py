"""Issue 19 item 11: stores, ledgers, the hub's database, keys and exported data are private to
the user who made them (files 0600, the folders made for them 0700) whatever the umask, and
a file of ours found open to others is tightened when it is opened."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from flip.data.cdm.store import open_store
from flip.data.ledger import Ledger
from flip.fl.runtime.credentials import make_node_key, make_tls
from flip.hub.db import connect
from tests.e2e.processes import FLIP


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _modes(folder: Path) -> dict[str, int]:
    """The mode of every file and folder under `folder`, by relative path."""
    return {str(p.relative_to(folder)): _mode(p) for p in sorted(folder.rglob("*"))}


@pytest.fixture
def open_umask():
    """A umask that leaves new files readable by everyone (0644), as many systems have."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_stores_ledgers_hub_database_and_keys_are_created_private(tmp_path, open_umask):
    for folder in ("site", "lite", "ledger", "hub"):
        (tmp_path / folder).mkdir()  # 0755: folders FLIP did not make are left as they are
    duck = open_store(tmp_path / "site" / "store.duckdb")
    duck.create()
    duck.close()
    lite = open_store(f"sqlite:///{tmp_path / 'lite' / 'store.sqlite'}")
    lite.create()
    lite.close()
    ledger = Ledger(tmp_path / "ledger" / "ledger.sqlite")
    ledger.record("test", {"n": 1})
    hub = connect(f"sqlite:///{tmp_path / 'hub' / 'hub.sqlite'}")
    make_node_key(tmp_path / "flower" / "node-keys", "alpha")
    make_tls(tmp_path / "tls")

    modes = _modes(tmp_path)
    ledger.close()
    hub.dispose()
    for folder in ("site", "lite", "ledger", "hub"):
        assert modes.pop(folder) == 0o755
    for folder in ("flower", "flower/node-keys", "tls"):
        assert modes.pop(folder) == 0o700, folder
    for public in ("flower/node-keys/alpha.pub", "tls/ca.crt", "tls/server.crt"):
        modes.pop(public)
    # Every other file (stores, ledger and hub database with their journals, keys) is 0600.
    assert {"site/store.duckdb", "ledger/ledger.sqlite-wal", "hub/hub.sqlite-wal"} <= set(modes)
    assert {name: mode for name, mode in modes.items() if mode != 0o600} == {}


def test_the_folders_made_for_a_store_and_a_ledger_are_private(tmp_path, open_umask):
    store = open_store(tmp_path / "new" / "data" / "store.duckdb")
    store.create()
    store.close()
    Ledger(tmp_path / "new" / "audit" / "ledger.sqlite").close()
    assert _modes(tmp_path) == {
        "new": 0o700,
        "new/data": 0o700,
        "new/data/store.duckdb": 0o600,
        "new/audit": 0o700,
        "new/audit/ledger.sqlite": 0o600,
    }


def test_our_files_open_to_others_are_tightened_when_opened(tmp_path, open_umask):
    store_path, ledger_path = tmp_path / "store.duckdb", tmp_path / "ledger.sqlite"
    hub_path = tmp_path / "hub.sqlite"
    s = open_store(store_path)
    s.create()
    s.close()
    Ledger(ledger_path).close()
    connect(f"sqlite:///{hub_path}").dispose()
    for path in (store_path, ledger_path, hub_path):
        path.chmod(0o644)

    open_store(store_path, read_only=True).close()
    Ledger(ledger_path).close()
    connect(f"sqlite:///{hub_path}").dispose()
    assert [_mode(p) for p in (store_path, ledger_path, hub_path)] == [0o600] * 3


@pytest.mark.slow
def test_the_flip_command_keeps_what_it_writes_private(tmp_path):
    def run(*args: str) -> None:
        result = subprocess.run(
            [*FLIP, *args],
            capture_output=True,
            text=True,
            timeout=120,
            preexec_fn=lambda: os.umask(0o022),
        )
        assert result.returncode == 0, result.stderr

    store = tmp_path / "store.duckdb"
    run("site", "init", "--store", str(store))
    run("site", "report", "--store", str(store), "--html", str(tmp_path / "report.html"))
    assert _modes(tmp_path) == {"store.duckdb": 0o600, "report.html": 0o600}
