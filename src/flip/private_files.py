"""Files and folders that hold patient data, keys or audit, private to the user who made them.

A file FLIP creates here is 0600 and a folder 0700 whatever the umask; a file that is
ours and open to others is tightened to 0600 when FLIP opens it. Files that libraries make
beside them follow suit: SQLite gives its journal the database's mode, and the `flip`
command runs with umask 077 for the rest (DuckDB's WAL, Flower's state).
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

FILE_MODE = 0o600
FOLDER_MODE = 0o700
#: What the `flip` command sets its umask to: nothing it creates is open to others.
UMASK = 0o077


def private_folder(path: Path) -> Path:
    """Make `path` and its missing parents as 0700 folders; a folder already there is kept."""
    missing = []
    folder = Path(path)
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, FOLDER_MODE)
        except FileExistsError:
            continue
        os.chmod(folder, FOLDER_MODE)
    return Path(path)


def tighten(path: Path) -> None:
    """Make `path` 0600 (a folder 0700) if this user owns it and others may use it."""
    info = os.stat(path)
    if info.st_uid == os.geteuid() and info.st_mode & 0o077:
        os.chmod(path, FOLDER_MODE if stat.S_ISDIR(info.st_mode) else FILE_MODE)


def private_file(path: Path) -> Path:
    """Create `path` empty and 0600 if it is missing (its missing folders 0700), else
    tighten it if it is ours."""
    path = Path(path)
    private_folder(path.parent)
    try:
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        tighten(path)
        return path
    os.fchmod(handle, FILE_MODE)
    os.close(handle)
    return path


def write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path`, which is 0600 before the first byte is written."""
    private_file(path)
    Path(path).write_bytes(data)


def private_database(url: str, *, create: bool = True) -> None:
    """Make the file of a SQLite or DuckDB URL private: a missing one is created 0600 (with
    `create`), an existing one of ours and its leftover journal tightened. Server URLs and
    in-memory databases are left alone."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "duckdb") or parsed.database in (None, "", ":memory:"):
        return
    path = Path(parsed.database)
    if path.exists():
        tighten(path)
        for suffix in ("-wal", "-shm", "-journal", ".wal"):
            if (side := path.with_name(path.name + suffix)).exists():
                tighten(side)
    elif create and backend == "sqlite":
        private_file(path)
    elif create:
        _new_duckdb(path)


def _new_duckdb(path: Path) -> None:
    """An empty DuckDB database at `path`, 0600 from the moment it is there: DuckDB will not
    open an empty file, so it is made in a private folder beside it and linked into place."""
    import duckdb

    private_folder(path.parent)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".flip-new-") as folder:
        fresh = Path(folder) / path.name
        duckdb.connect(str(fresh)).close()
        os.chmod(fresh, FILE_MODE)
        with contextlib.suppress(FileExistsError):  # another process made it first
            os.link(fresh, path)
