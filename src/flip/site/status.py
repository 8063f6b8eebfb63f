"""What the site agent last saw, for the site console: whether it reaches the hub, when it last
polled, its last error, the tasks the hub offers this site (kept after they are decided,
so the console can show what changed since the version the site last approved), and the
analyses it asks this site for.

A small SQLite file beside the ledger (0600): the agent writes it, the console reads it.
It is a convenience, not a record: decisions live in the ledger.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from flip.private_files import private_file

_SCHEMA = """
CREATE TABLE IF NOT EXISTS agent (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    hub TEXT, connected INTEGER NOT NULL DEFAULT 0, last_poll TEXT, last_contact TEXT,
    last_error TEXT, last_error_at TEXT
);
CREATE TABLE IF NOT EXISTS offered_task (
    project TEXT NOT NULL, task_hash TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL,
    spec TEXT NOT NULL, project_name TEXT, researcher TEXT,
    first_seen TEXT NOT NULL, last_seen TEXT NOT NULL, open INTEGER NOT NULL,
    PRIMARY KEY (project, task_hash)
);
CREATE TABLE IF NOT EXISTS offered_analysis (
    project TEXT NOT NULL, hash TEXT NOT NULL, analysis INTEGER NOT NULL, kind TEXT NOT NULL,
    spec TEXT NOT NULL, first_seen TEXT NOT NULL, last_seen TEXT NOT NULL, open INTEGER NOT NULL,
    PRIMARY KEY (project, hash)
);
"""

#: The characters of an error the status keeps.
ERROR_CHARACTERS = 500


def status_path(ledger: str | Path) -> Path:
    """Where the agent's status of the site whose ledger is `ledger` lives."""
    ledger = Path(ledger)
    return ledger.with_name(f"{ledger.stem}-agent.sqlite")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class AgentStatus:
    """The agent's status file."""

    def __init__(self, path: Path) -> None:
        self.path = private_file(Path(path))
        self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(_SCHEMA)

    def polled(self, hub: str | None, error: str | None = None) -> None:
        """Record a poll of `hub`: it answered (no `error`), or why it failed."""
        now = _now()
        self.db.execute("INSERT OR IGNORE INTO agent (id) VALUES (1)")
        if error is None:
            self.db.execute(
                "UPDATE agent SET hub = ?, connected = 1, last_poll = ?, last_contact = ?",
                (hub, now, now),
            )
        else:
            self.db.execute(
                "UPDATE agent SET hub = ?, connected = 0, last_poll = ?, last_error = ?, "
                "last_error_at = ?",
                (hub, now, error[:ERROR_CHARACTERS], now),
            )

    def failed(self, error: str) -> None:
        """Record an error handling work (the hub was reached)."""
        self.db.execute("INSERT OR IGNORE INTO agent (id) VALUES (1)")
        self.db.execute(
            "UPDATE agent SET last_error = ?, last_error_at = ?", (error[:ERROR_CHARACTERS], _now())
        )

    def offered(self, tasks: Iterable[dict[str, Any]]) -> None:
        """Record the tasks the hub asks this site to decide now; any other is no longer open."""
        now = _now()
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.execute("UPDATE offered_task SET open = 0")
            for task in tasks:
                spec = task.get("spec") or {}
                self.db.execute(
                    "INSERT INTO offered_task VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1) "
                    "ON CONFLICT (project, task_hash) DO UPDATE SET open = 1, last_seen = ?, "
                    "project_name = excluded.project_name, researcher = excluded.researcher",
                    (
                        str(task["project_id"]),
                        str(task["hash"]),
                        str(task.get("kind") or spec.get("kind") or ""),
                        str(spec.get("name") or ""),
                        orjson.dumps(spec, option=orjson.OPT_SORT_KEYS).decode(),
                        task.get("project_name"),
                        task.get("researcher"),
                        now,
                        now,
                        now,
                    ),
                )
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def offered_analyses(self, items: Iterable[dict[str, Any]]) -> None:
        """Record the analyses the hub asks this site for now (by project and hash); any
        other is no longer open."""
        now = _now()
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.execute("UPDATE offered_analysis SET open = 0")
            for item in items:
                try:
                    spec = item["spec"]
                    row = (
                        str(int(item["project_id"])),
                        str(item["hash"])[:64],
                        int(item["id"]),
                        str(spec.get("kind") or "")[:40],
                        orjson.dumps(spec, option=orjson.OPT_SORT_KEYS).decode(),
                    )
                except (KeyError, TypeError, ValueError, AttributeError, orjson.JSONEncodeError):
                    continue  # the agent refuses a malformed analysis; nothing to show
                self.db.execute(
                    "INSERT INTO offered_analysis VALUES (?, ?, ?, ?, ?, ?, ?, 1) "
                    "ON CONFLICT (project, hash) DO UPDATE SET open = 1, last_seen = ?, "
                    "analysis = excluded.analysis",
                    (*row, now, now, now),
                )
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def analyses(self, *, open_only: bool = False) -> list[dict[str, Any]]:
        """Analyses the hub asked this site for (open ones only), newest first, spec parsed."""
        return self._offered("offered_analysis", ["open = 1"] if open_only else [], [])

    def analysis(self, project: str, digest: str) -> dict[str, Any] | None:
        """One analysis the hub asked for, by project and hash, or None."""
        return next(
            (a for a in self.analyses() if a["project"] == project and a["hash"] == digest), None
        )

    def agent(self) -> dict[str, Any] | None:
        """The agent's last poll (hub, connected, last_poll, last_contact, last_error,
        last_error_at), or None if no agent ever ran here."""
        row = self.db.execute(
            "SELECT hub, connected, last_poll, last_contact, last_error, last_error_at FROM agent"
        ).fetchone()
        if row is None:
            return None
        keys = ("hub", "connected", "last_poll", "last_contact", "last_error", "last_error_at")
        return dict(zip(keys, row, strict=True)) | {"connected": bool(row[1])}

    def tasks(self, project: str | None = None, *, open_only: bool = False) -> list[dict]:
        """Tasks the hub offered (of `project`; open ones only), newest first, spec parsed."""
        where, args = [], []
        if project is not None:
            where.append("project = ?")
            args.append(project)
        if open_only:
            where.append("open = 1")
        return self._offered("offered_task", where, args)

    def _offered(self, table: str, where: list[str], args: list[str]) -> list[dict[str, Any]]:
        """The rows of `table` (offered_task or offered_analysis) that match, newest first."""
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self.db.execute(
            f"SELECT * FROM {table} {clause} ORDER BY first_seen DESC, rowid DESC", args
        )
        names = [d[0] for d in rows.description]
        found = [dict(zip(names, row, strict=True)) for row in rows.fetchall()]
        for item in found:
            item["spec"] = orjson.loads(item["spec"])
            item["open"] = bool(item["open"])
        return found

    def task(self, project: str, task_hash: str) -> dict[str, Any] | None:
        """One offered task, or None."""
        return next((t for t in self.tasks(project) if t["task_hash"] == task_hash), None)

    def close(self) -> None:
        """Release the file."""
        self.db.close()

    def __enter__(self) -> AgentStatus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
