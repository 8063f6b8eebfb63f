"""What a site releases for a cohort: its count, histograms and (Circe) attrition, small
cells suppressed, counts rounded as the site's policy says, and, with a guard, never a count
that a project could difference against an earlier one to single out a few persons."""

from __future__ import annotations

from itertools import pairwise

from sqlalchemy import create_engine

from flip.data.cdm.store import Store
from flip.data.cohort.circe.definition import CirceDefinition
from flip.data.cohort.definition import CohortDefinition
from flip.data.cohort.disclosure import SiteCount, rounded, suppress, suppress_bins
from flip.data.cohort.guard import ReleaseGuard
from flip.data.cohort.sql import cohort, population
from flip.stats.attrition import WITHHELD
from flip.stats.suppression import hidden, is_small


class Refused(Exception):
    """The site will not answer this query; the message says why."""


def release(
    store: Store,
    definition: CohortDefinition | CirceDefinition,
    threshold: int,
    guard: ReleaseGuard | None = None,
    round_to: int = 1,
) -> SiteCount:
    """The count and, when the count itself is released, the asked-for histograms; for a
    Circe cohort, its attrition (`released_steps`).

    With a guard: refuse once the project's budget is spent or its audit would pass the
    site's limit (`ReleaseGuard.audit_problem`), or when the total would, with
    the counts released before (and the site's total, which the hub may know), tell the
    size of a group of fewer than `threshold` persons (that refusal spends a query of the
    budget too); suppress a bin that would, against those or another breakdown's bins in
    this answer (then the secondary suppression; and every bin when the shown ones would
    together), and remember what was released.
    """
    if guard is not None:
        everyone = population(store)
        if problem := guard.budget_problem() or guard.audit_problem(len(everyone)):
            raise Refused(problem)
        guard.also_known(everyone)
    found = cohort(store, definition)
    released = suppress(len(found.members), threshold)
    sets: list[frozenset[int]] = []
    if not released.suppressed:
        if guard is not None and guard.isolates(found.members):
            guard.remember([])  # the refusal tells that a small group exists: it costs a query
            raise Refused(guard.refusal())
        sets.append(found.members)
        if guard is not None:
            guard.hold(sets)
        for by, cells in found.cells.items():
            bins, shown = _bins(cells, threshold, guard)
            released.histograms[by] = {k: rounded(v, round_to, threshold) for k, v in bins.items()}
            sets += shown
            if guard is not None:
                guard.hold(shown)
        released.count = rounded(released.count, round_to, threshold)
    if found.steps:
        steps_guard = guard
        if steps_guard is None:
            steps_guard = _scratch_guard(threshold)
            steps_guard.hold(sets[:1])
        released.attrition, shown = released_steps(found.steps, threshold, steps_guard, round_to)
        sets += shown
    if guard is not None:
        guard.remember(sets)
    return released


def _scratch_guard(threshold: int) -> ReleaseGuard:
    """A guard that remembers nothing past this answer: its counts are checked against each
    other only."""
    return ReleaseGuard(create_engine("sqlite://"), "", "scratch", threshold, None)


def released_steps(
    steps: list[frozenset[int]],
    threshold: int,
    guard: ReleaseGuard | None = None,
    round_to: int = 1,
) -> tuple[list[int | str], list[frozenset[int]]]:
    """Each attrition step's count as released, and the sets whose counts that gives away.

    A small count is hidden ("<10"); a step the guard finds isolating against the sets
    released before (earlier steps, this answer's count, or with the site's guard any count
    the project was given: by difference or by inclusion-exclusion) is withheld; the rest
    are rounded as `round_to` says.
    """
    if any(not later <= earlier for earlier, later in pairwise(steps)):
        raise ValueError("each attrition step must keep only persons of the step before")
    guard = guard or _scratch_guard(threshold)
    released: list[int | str] = []
    shown: list[frozenset[int]] = []
    for members in steps:
        if is_small(len(members), threshold):
            released.append(hidden(threshold))
        elif guard.isolates(members):
            released.append(WITHHELD)
        else:
            released.append(rounded(len(members), round_to, threshold) or 0)
            guard.hold([members])
            shown.append(members)
    return released, shown


def _bins(
    cells: dict[str, frozenset[int]], threshold: int, guard: ReleaseGuard | None
) -> tuple[dict[str, int | None], list[frozenset[int]]]:
    """A breakdown's bins as released, and the sets of persons their counts give away: each
    shown bin's, and the hidden bins' together (the total less the shown bins).

    A bin that isolates is hidden; when what is left to show would, all together, every bin is.
    """
    isolates = guard.isolates if guard is not None else lambda _: False
    hidden = {k for k, v in cells.items() if isolates(v)}
    bins = suppress_bins({k: len(v) for k, v in cells.items()}, threshold, hidden)
    shown = [cells[k] for k, v in bins.items() if v]
    if not shown:
        return bins, []
    gone = frozenset().union(*(cells[k] for k, v in bins.items() if v is None))
    if guard is not None and guard.isolates_together([*shown, gone]):
        return dict.fromkeys(bins), []
    return bins, [*shown, gone]
