"""The site's own ledger: its approvals of (project, task hash) and its hash-chained audit log.

It lives in a small SQLite file beside the store, so the site agent and every
ClientApp process can read and append to it safely at the same time. Every
approval is also a chained audit entry, and an approval row the chain does not
vouch for is refused. The rounds each run trained and evaluated and the epsilon it
spent exist only as chained entries, read back through a verified chain, so a count
edited or removed is refused as a tampered ledger. The hub keeps the ledger's signed
heads, and the ledger keeps the hub's (`hub_head`), so a truncation or a recomputed
chain shows on the side that did not make it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import orjson
from sqlalchemy import (
    Column,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    insert,
    select,
)

from flip.hashchain import GENESIS, entry_hash, first_break
from flip.private_files import private_file

DECISIONS = ("task.approved", "task.declined")

_meta = MetaData()

approvals = Table(
    "approval",
    _meta,
    Column("project", String(100), primary_key=True),
    Column("task_hash", String(64), primary_key=True),
    Column("decision", String(10), nullable=False),
    Column("reason", Text),
    Column("decided_by", String(100), nullable=False),
    Column("decided_at", String(40), nullable=False),
)

#: Audit actions that carry the site's counts: a round trained or evaluated (`kind`) by a
#: run of a task, and the epsilon a run of a task has spent on a dataset. The counts are
#: derived from these chained entries only, so a count edited or removed breaks the chain.
COUNTED = "round.counted"
CHARGED = "budget.charged"

audit = Table(
    "audit",
    _meta,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("at", String(40), nullable=False),
    Column("action", String(60), nullable=False),
    Column("detail", Text, nullable=False),
    Column("hash", String(64), nullable=False),
)

#: The hub's signed audit heads this site has seen (the agent records each new one).
hub_heads = Table(
    "hub_head",
    _meta,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("hash", String(64), primary_key=True),
    Column("signature", Text, nullable=False),
    Column("seen_at", String(40), nullable=False),
)


class LedgerTampered(ValueError):
    """The ledger's chain is broken, or its approvals are not the ones the chain records."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


class Ledger:
    """Approvals and audit of one site."""

    def __init__(self, path: str | Path) -> None:
        private_file(Path(path))
        self.engine: Engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 30})
        event.listen(self.engine, "connect", _pragmas)
        event.listen(self.engine, "begin", _begin_immediate)
        _meta.create_all(self.engine)

    def decide(
        self, project: str, task_hash: str, decision: str, by: str, reason: str = ""
    ) -> None:
        """Record the site's decision (approved or declined) on a project's task, and audit it."""
        if decision not in ("approved", "declined"):
            raise ValueError(f"decision must be approved or declined, not {decision!r}")
        with self.engine.begin() as conn:
            conn.execute(
                approvals.delete().where(
                    approvals.c.project == project, approvals.c.task_hash == task_hash
                )
            )
            conn.execute(
                insert(approvals).values(
                    project=project,
                    task_hash=task_hash,
                    decision=decision,
                    reason=reason,
                    decided_by=by,
                    decided_at=_now(),
                )
            )
            self._append(
                conn,
                f"task.{decision}",
                {"project": project, "task_hash": task_hash, "by": by, "reason": reason},
            )

    def is_approved(self, project: str, task_hash: str) -> bool:
        """Whether the site approved exactly this task hash for this project.

        LedgerTampered if the chain is broken or the approval row is not the decision
        the chain records last for this task (a row edited or added outside `decide`).
        """
        rows, chained = self._decisions(
            approvals.c.project == project, approvals.c.task_hash == task_hash
        )
        found = rows.get((project, task_hash))
        if found != chained.get((project, task_hash)):
            raise LedgerTampered(_mismatch(project, task_hash))
        return found is not None and found[0] == "approved"

    def approved_for_any_project(self, task_hash: str) -> bool:
        """Whether the site approved exactly this task hash for some project (LedgerTampered
        as `is_approved`)."""
        rows, chained = self._decisions(approvals.c.task_hash == task_hash)
        for key, found in rows.items():
            if found != chained.get(key):
                raise LedgerTampered(_mismatch(*key))
        return any(found[0] == "approved" for found in rows.values())

    def approval_problems(self) -> list[str]:
        """Each approval row that is not the decision the chain records (or the broken chain)."""
        try:
            rows, chained = self._decisions()
        except LedgerTampered as exc:
            return [str(exc)]
        return [
            _mismatch(*key)
            for key in sorted(rows.keys() | chained.keys())
            if rows.get(key) != chained.get(key)
        ]

    def _decisions(
        self, *where
    ) -> tuple[dict[tuple[str, str], tuple], dict[tuple[str, str], tuple]]:
        """The approval rows (those `where` selects) and the last decision the chain records on
        each task, as (decision, by, reason) by (project, task hash); LedgerTampered if the
        chain is broken."""
        columns = (approvals.c.decision, approvals.c.decided_by, approvals.c.reason)
        with self.engine.connect() as conn:
            found = conn.execute(
                select(approvals.c.project, approvals.c.task_hash, *columns).where(*where)
            )
            rows = {(r[0], r[1]): (r[2], r[3], r[4] or "") for r in found}
            entries = _verified(conn)
        chained = {}
        for entry in entries:
            if entry["action"] in DECISIONS:
                detail = orjson.loads(str(entry["detail"]))
                key = (str(detail.get("project")), str(detail.get("task_hash")))
                decision = str(entry["action"]).removeprefix("task.")
                chained[key] = (decision, detail.get("by"), detail.get("reason") or "")
        return rows, chained

    def decision(self, project: str, task_hash: str) -> dict[str, str] | None:
        """The site's decision on this task (decision, reason, decided_by), or None."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(approvals.c.decision, approvals.c.reason, approvals.c.decided_by).where(
                    approvals.c.project == project, approvals.c.task_hash == task_hash
                )
            ).first()
        return None if row is None else {k: str(v or "") for k, v in row._mapping.items()}

    def count_round(
        self,
        run: str,
        project: str,
        task_hash: str,
        limit: int | None,
        *,
        kind: Literal["train", "evaluate", "analysis"] = "train",
        across_runs: bool = False,
    ) -> int | None:
        """Count one more round of this task trained (or evaluated, or of an analysis
        released) in `run` and return how many it has now, or None (counting nothing) when
        the run (with `across_runs`, every run of this task) has already had `limit`.
        LedgerTampered if the chain is broken."""
        with self.engine.begin() as conn:
            counts = _counts(_verified(conn))
            done = counts.get((kind, run, project, task_hash), 0)
            every = sum(
                n for (k, _, p, t), n in counts.items() if (k, p, t) == (kind, project, task_hash)
            )
            if limit is not None and (every if across_runs else done) >= limit:
                return None
            detail = {"kind": kind, "run": run, "project": project, "task_hash": task_hash}
            self._append(conn, COUNTED, {**detail, "rounds": done + 1})
            return done + 1

    def rounds_counted(
        self, project: str, task_hash: str, kind: Literal["train", "evaluate"] = "train"
    ) -> int:
        """Rounds of this task trained (or evaluated) here across every run; LedgerTampered
        if the chain is broken."""
        with self.engine.connect() as conn:
            counts = _counts(_verified(conn))
        wanted = (kind, project, task_hash)
        return sum(n for (k, _, p, t), n in counts.items() if (k, p, t) == wanted)

    def joined_run(self, run: int, project: str, task_hash: str) -> dict[str, object] | None:
        """What this site recorded when it joined hub run `run` of this task (its rounds, when
        the hub said), or None if it never did."""
        with self.engine.connect() as conn:
            found = conn.execute(
                select(audit.c.detail).where(audit.c.action == "run.joined").order_by(audit.c.seq)
            ).scalars()
            for text in found:
                detail = orjson.loads(text)
                about = (
                    str(detail.get("project")),
                    detail.get("task_hash"),
                    str(detail.get("run")),
                )
                if about == (project, task_hash, str(run)):
                    return detail
        return None

    def spent(self) -> float:
        """The epsilon every run of every task of every project has spent at this site, on
        whichever persons; LedgerTampered if the chain is broken."""
        with self.engine.connect() as conn:
            charges = _charges(_verified(conn))
        return sum(epsilon for epsilon, _ in charges.values())

    def spent_delta(self) -> float:
        """The deltas of every charge summed: with `spent`, the site's total guarantee by
        basic composition; LedgerTampered if the chain is broken."""
        with self.engine.connect() as conn:
            charges = _charges(_verified(conn))
        return sum(delta for _, delta in charges.values())

    def spend(
        self,
        run: str,
        project: str,
        dataset: str,
        task_hash: str,
        epsilon: float,
        delta: float,
        limit: float | None,
    ) -> float | None:
        """Set what `run` of this task of `project` has spent on `dataset` (the persons it
        read, kept for the audit) to `epsilon` (never lower than it was) and return the site's
        total across runs, tasks, projects and datasets, or None (spending nothing) when the
        total would pass `limit`: one budget for the site, since every person at the site
        could be in any cohort and a cohort one person away from another is nearly the same
        persons. Charges at different deltas (the site changed its max_delta) add up by basic
        composition: the total guarantee is (the epsilons' sum, the deltas' sum); a run
        charged again is charged at the new delta. LedgerTampered if the chain is broken."""
        key = (run, project, dataset, task_hash)
        with self.engine.begin() as conn:
            charges = _charges(_verified(conn))
            epsilon = max(epsilon, charges.get(key, (0.0, delta))[0])  # spent is not given back
            total = sum(e for k, (e, _) in charges.items() if k != key) + epsilon
            if limit is not None and total > limit:
                return None
            detail = {"run": run, "project": project, "dataset": dataset, "task_hash": task_hash}
            self._append(conn, CHARGED, {**detail, "epsilon": epsilon, "delta": delta})
            return total

    def record(self, action: str, detail: dict[str, object]) -> None:
        """Append one entry to the audit log."""
        with self.engine.begin() as conn:
            self._append(conn, action, detail)

    def _append(self, conn, action: str, detail: dict[str, object]) -> None:
        last = conn.execute(
            select(audit.c.seq, audit.c.hash).order_by(audit.c.seq.desc()).limit(1)
        ).first()
        seq, previous = (last[0] + 1, last[1]) if last else (1, GENESIS)
        at = _now()
        body = orjson.dumps(detail, option=orjson.OPT_SORT_KEYS, default=str).decode()
        digest = entry_hash(previous, {"seq": seq, "at": at, "action": action, "detail": body})
        conn.execute(insert(audit).values(seq=seq, at=at, action=action, detail=body, hash=digest))

    def chained(self, actions: frozenset[str]) -> list[tuple[str, dict[str, object]]]:
        """(action, detail) of each entry of `actions`, oldest first, read through a verified
        chain; LedgerTampered if it is broken."""
        with self.engine.connect() as conn:
            entries = _verified(conn)
        return [
            (str(e["action"]), orjson.loads(str(e["detail"])))
            for e in entries
            if e["action"] in actions
        ]

    def entries(self) -> list[dict[str, object]]:
        """Every audit entry, oldest first."""
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(select(audit).order_by(audit.c.seq))]

    def verify(self) -> int | None:
        """The seq of the first entry that was edited or removed, or None if the chain holds."""
        return _first_break(self.entries())

    def head(self) -> tuple[int, str]:
        """(seq, hash) of the newest entry; (0, GENESIS) for an empty log."""
        with self.engine.connect() as conn:
            last = conn.execute(
                select(audit.c.seq, audit.c.hash).order_by(audit.c.seq.desc()).limit(1)
            ).first()
        return (int(last[0]), str(last[1])) if last else (0, GENESIS)

    def hash_at(self, seq: int) -> str | None:
        """The stored hash of entry `seq`, or None if there is none."""
        with self.engine.connect() as conn:
            return conn.execute(select(audit.c.hash).where(audit.c.seq == seq)).scalar()

    def record_hub_head(self, seq: int, digest: str, signature: str) -> None:
        """Keep a signed head of the hub's audit chain this site was shown (once each)."""
        with self.engine.begin() as conn:
            seen = conn.execute(
                select(hub_heads.c.seq).where(hub_heads.c.seq == seq, hub_heads.c.hash == digest)
            ).first()
            if seen is None:
                conn.execute(
                    insert(hub_heads).values(
                        seq=seq, hash=digest, signature=signature, seen_at=_now()
                    )
                )

    def hub_heads(self) -> list[dict[str, object]]:
        """The hub's signed heads this site has seen, oldest first."""
        with self.engine.connect() as conn:
            query = select(hub_heads).order_by(hub_heads.c.seq)
            return [dict(r._mapping) for r in conn.execute(query)]

    def close(self) -> None:
        """Release the file."""
        self.engine.dispose()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _verified(conn) -> list[dict[str, object]]:
    """Every audit entry, oldest first, once the chain holds; LedgerTampered if it does not."""
    entries = [dict(r._mapping) for r in conn.execute(select(audit).order_by(audit.c.seq))]
    broken = _first_break(entries)
    if broken is not None:
        raise LedgerTampered(f"the site ledger's audit chain is broken at entry {broken}")
    return entries


def _counts(entries: list[dict[str, object]]) -> dict[tuple[str, str, str, str], int]:
    """The rounds each (kind, run, project, task hash) has counted, from the chained entries."""
    counts = {}
    for entry in entries:
        if entry["action"] == COUNTED:
            d = orjson.loads(str(entry["detail"]))
            counts[(d["kind"], d["run"], d["project"], d["task_hash"])] = int(d["rounds"])
    return counts


def _charges(
    entries: list[dict[str, object]],
) -> dict[tuple[str, str, str, str], tuple[float, float]]:
    """(epsilon, delta) each (run, project, dataset, task hash) has spent, from the chain."""
    charges = {}
    for entry in entries:
        if entry["action"] == CHARGED:
            d = orjson.loads(str(entry["detail"]))
            key = (d["run"], d["project"], d["dataset"], d["task_hash"])
            charges[key] = (float(d["epsilon"]), float(d["delta"]))
    return charges


def _mismatch(project: str, task_hash: str) -> str:
    return (
        f"the approval of task {task_hash[:12]}… for project {project} is not the decision "
        "the audit chain records (edited, added or removed outside the ledger)"
    )


def _first_break(rows: list[dict[str, object]]) -> int | None:
    """The seq of the first audit row that does not chain, or None."""
    fields = ("seq", "at", "action", "detail")
    index = first_break([({k: r[k] for k in fields}, str(r["hash"])) for r in rows])
    return None if index is None else int(rows[index]["seq"])


def _begin_immediate(conn) -> None:
    """Take the write lock when a transaction starts, so concurrent appends never race."""
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _pragmas(dbapi_connection, _record) -> None:
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
