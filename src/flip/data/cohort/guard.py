"""Differencing control: a site never gives a project a count that, added to and subtracted
from the counts it gave before, tells how many persons are in a small group; and it answers
a project at most its budget of queries.

Every set of persons whose count a site released to a project (a cohort's total, a
histogram's bin, an attrition step, a task's split) is kept, compressed, in the site's
ledger file: never at the hub. A new set is "isolating" when it holds a kept set and 1 to
threshold-1 more persons (or the reverse), or when the linear audit
(`flip.data.cohort.derivable`) finds that its count makes the size of a small group
derivable: an atom of the partition the released sets make, or the difference or
intersection of two of them, or a union of small atoms (inclusion-exclusion across queries
included); a set the audit cannot decide within its limits counts as isolating. The site's
own total may be known to the hub without asking: `also_known` audits both ways.
Hold and remember only what was released: the audit takes what is kept as known.
"""

from __future__ import annotations

import hashlib
import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable
from copy import deepcopy
from datetime import UTC, datetime

import numpy as np
from sqlalchemy import (
    Column,
    Engine,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    func,
    insert,
    select,
)

from flip.data.cohort.derivable import Released

_meta = MetaData()

released_query = Table(
    "released_query",
    _meta,
    Column("project", String(100), primary_key=True),
    Column("query", String(100), primary_key=True),
    Column("at", String(40), nullable=False),
)

released_set = Table(
    "released_set",
    _meta,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project", String(100), nullable=False, index=True),
    Column("query", String(100), nullable=False),
    Column("members", LargeBinary, nullable=False),
)


class ReleaseGuard:
    """The differencing check and the query budget of one query of one project at a site.

    `budget` is how many queries the site answers for a project (None: no limit);
    `max_cells` the largest audit (kept sets x persons) it keeps for one (None: no limit).
    """

    def __init__(
        self,
        engine: Engine,
        project: str,
        query: str,
        threshold: int,
        budget: int | None,
        max_cells: int | None = None,
    ) -> None:
        self.engine, self.project, self.query = engine, project, query
        self.threshold, self.budget, self.max_cells = threshold, budget, max_cells
        self._held: list[np.ndarray] = []
        self._loaded: list[np.ndarray] | None = None
        self._released_audit: Released | None = None
        self._population: Released | None = None
        self.undecided: str | None = None
        _meta.create_all(engine)

    def budget_problem(self) -> str | None:
        """Why the project has no query left at this site, or None."""
        if self.budget is None:
            return None
        with self.engine.connect() as conn:
            answered = conn.execute(
                select(func.count()).where(
                    released_query.c.project == self.project, released_query.c.query != self.query
                )
            ).scalar_one()
        if answered >= self.budget:
            return f"the project has used its budget of {self.budget} queries at this site"
        return None

    def audit_problem(self, persons: int = 0) -> str | None:
        """Why the project's audit would be too large to check one more set (its kept sets
        and that one, over the site's `persons` or those in any kept set if more), or None.
        Measured from the ledger (a count, then the kept sets' union) before any audit."""
        if self.max_cells is None:
            return None
        with self.engine.connect() as conn:
            kept = conn.execute(
                select(func.count()).where(released_set.c.project == self.project)
            ).scalar_one()
        width = max(1, persons)
        if (kept + 1) * width <= self.max_cells:
            loaded = self._load()
            if loaded:
                width = max(width, int(np.unique(np.concatenate(loaded)).size))
        if (kept + 1) * width <= self.max_cells:
            return None
        return (
            f"this project's differencing audit at this site ({kept} kept sets and this one, "
            f"over {width} persons) would pass the site's limit of {self.max_cells} cells; "
            "the site admin can raise policy.max_audit_cells in site.yaml"
        )

    def isolates(self, members: frozenset[int]) -> bool:
        """Whether releasing the count of `members` would, with the counts released before to
        this project, give away the size of a group of 1 to threshold-1 persons (or the audit
        cannot tell: then `undecided` says why)."""
        return self._reveals(self._audits(), _array(members))

    def isolates_together(self, sets: list[frozenset[int]]) -> bool:
        """Whether releasing the counts of all `sets` (one after another) would, with the
        counts released before, give away the size of a group of 1 to threshold-1 persons."""
        audits = deepcopy(self._audits())
        for members in filter(None, sets):
            candidate = _array(members)
            if self._reveals(audits, candidate):
                return True
            for audit in audits:
                audit.add(candidate)
        return False

    def _reveals(self, audits: list[Released], candidate: np.ndarray) -> bool:
        """Whether any of `audits` finds `candidate` revealing; keeps why when one could not
        decide (`undecided`)."""
        for audit in audits:
            if audit.reveals(candidate, self.threshold):
                self.undecided = audit.undecided
                return True
        return False

    def refusal(self) -> str:
        """Why the last count found isolating is refused: the audit's limit when it could not
        decide, else the differencing it found."""
        if self.undecided is not None:
            return f"its count cannot be checked: {self.undecided}"
        return (
            "its count, with those this project was already given, would tell the size "
            f"of a group of fewer than {self.threshold} persons"
        )

    def released_before(self, members: frozenset[int]) -> bool:
        """Whether the count of exactly these persons was released to this project before."""
        wanted = _array(members)
        return any(
            kept.size == wanted.size and np.array_equal(kept, wanted)
            for kept in [*self._load(), *self._held]
        )

    def hold(self, sets: list[frozenset[int]]) -> None:
        """Check what follows in this query against `sets` too: a query's own released sets
        (its total, one breakdown's bins) must not isolate anyone against each other."""
        fresh = [_array(s) for s in sets if s]
        audits = self._audits()
        self._held.extend(fresh)
        for members in fresh:
            for audit in audits:
                audit.add(members)

    def also_known(self, population: frozenset[int]) -> None:
        """Audit as well as if the project knew the count of `population` (the site's
        persons, which the hub may know without asking): a count must give no small group
        away either way, since taking an unknown count as known would hide what it adds."""
        if population:
            self._population = deepcopy(self._audit())
            self._population.add(_array(population))

    def _load(self) -> list[np.ndarray]:
        """The kept sets' person ids, read from the ledger once."""
        if self._loaded is None:
            with self.engine.connect() as conn:
                blobs = conn.execute(
                    select(released_set.c.members).where(released_set.c.project == self.project)
                ).scalars()
                self._loaded = [_unpack(b) for b in blobs]
        return self._loaded

    def _audits(self) -> list[Released]:
        return [self._audit(), *([self._population] if self._population is not None else [])]

    def _audit(self) -> Released:
        if self._released_audit is None:
            self._released_audit = _BUILT.audit(self.engine, self.project, self._load)
        return self._released_audit

    def remember(self, sets: list[frozenset[int]], *, counted: bool = True) -> None:
        """Keep that this query was answered (unless not `counted` against the budget: a
        task's set sizes) and the (non-empty) sets whose counts it released."""
        at = datetime.now(UTC).isoformat(timespec="microseconds")
        with self.engine.begin() as conn:
            if counted:
                conn.execute(
                    released_query.delete().where(
                        released_query.c.project == self.project,
                        released_query.c.query == self.query,
                    )
                )
                conn.execute(
                    insert(released_query).values(project=self.project, query=self.query, at=at)
                )
            rows = [
                {"project": self.project, "query": self.query, "members": _pack(s)}
                for s in sets
                if s
            ]
            if rows:
                conn.execute(insert(released_set), rows)


class _BuiltAudits:
    """The audits built lately, one per (ledger, project), kept between queries: a query
    whose project released more since gets a copy with only the new sets added, not an
    audit rebuilt from every kept set (~2-3 s at the audit limit)."""

    def __init__(self, most: int = 4) -> None:
        self.most = most
        self._kept: OrderedDict[tuple[str, str], tuple[int, int, bytes, Released]] = OrderedDict()
        self._lock = threading.Lock()

    def audit(self, engine: Engine, project: str, load: Callable[[], list[np.ndarray]]) -> Released:
        """A fresh copy of the project's audit over every set its ledger keeps now."""
        key = (engine.url.render_as_string(hide_password=False), project)
        with engine.connect() as conn:
            count, last = conn.execute(
                select(func.count(), func.coalesce(func.max(released_set.c.id), 0)).where(
                    released_set.c.project == project
                )
            ).one()
            with self._lock:
                kept = self._kept.get(key)
            if kept is not None and kept[1] <= last:
                new = (
                    conn.execute(
                        select(released_set.c.members)
                        .where(released_set.c.project == project, released_set.c.id > kept[1])
                        .order_by(released_set.c.id)
                    )
                    .scalars()
                    .all()
                )
                if kept[0] + len(new) == count:
                    built = deepcopy(kept[2])
                    for blob in new:
                        built.add(_unpack(blob))
                    return self._keep(key, count, last, built)
        return self._keep(key, count, last, Released(load()))

    def _keep(self, key: tuple[str, str], count: int, last: int, built: Released) -> Released:
        with self._lock:
            self._kept[key] = (count, last, built)
            self._kept.move_to_end(key)
            while len(self._kept) > self.most:
                self._kept.popitem(last=False)
        return deepcopy(built)


_BUILT = _BuiltAudits()


def _digest(blob: bytes) -> bytes:
    return hashlib.sha256(blob).digest()


def _array(members: frozenset[int]) -> np.ndarray:
    return np.sort(np.fromiter(members, dtype=np.int64, count=len(members)))


def _pack(members: frozenset[int]) -> bytes:
    return zlib.compress(np.diff(_array(members), prepend=0).tobytes())


def _unpack(blob: bytes) -> np.ndarray:
    return np.cumsum(np.frombuffer(zlib.decompress(blob), dtype=np.int64))
