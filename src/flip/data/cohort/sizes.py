"""The sizes of a task's training and test sets as a site releases them: like any count.

A size is a count of persons, so it is suppressed below the site's threshold, rounded as
its policy says, and withheld when the differencing guard finds that it would, with the
counts this project was given before (a cohort's, a bin's, another task's split), tell
how many are in a group of 1 to threshold-1 persons (`ReleaseGuard.isolates`).
"""

from __future__ import annotations

from sqlalchemy import Engine

from flip.data.cohort.disclosure import rounded, suppress
from flip.data.cohort.guard import ReleaseGuard


def release_sizes(
    engine: Engine,
    project: str,
    task_hash: str,
    sets: dict[str, frozenset[int]],
    threshold: int,
    round_to: int = 1,
    max_cells: int | None = None,
) -> dict[str, int | None]:
    """Each named set's size as released to `project` (None: withheld), remembered in the
    guard kept in `engine` (the site's ledger); a size released before is released again.
    The sets together count as released when every size is (their sizes add up to it):
    when their union would isolate a few persons, every size not released before is
    withheld; so is every one not released before when the project's audit would pass
    `max_cells` (kept sets x persons)."""
    guard = ReleaseGuard(engine, project, f"task {task_hash}", threshold, None, max_cells)
    whole = frozenset().union(*sets.values())
    spare = guard.audit_problem() is None and (
        not whole or guard.released_before(whole) or not guard.isolates(whole)
    )
    released: dict[str, int | None] = {}
    fresh: list[frozenset[int]] = []
    for name, members in sets.items():
        size = suppress(len(members), threshold).count
        if size and not guard.released_before(members):
            if not spare or guard.isolates(members):
                size = None
            else:
                fresh.append(members)
                guard.hold([members])
        released[name] = rounded(size, round_to, threshold)
    if whole and None not in released.values() and not guard.released_before(whole):
        fresh.append(whole)
    if fresh:
        guard.remember(fresh, counted=False)
    return released
