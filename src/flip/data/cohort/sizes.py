"""The sizes of a task's training and test sets as a site releases them: like any count.

A size is a count of persons, so it is suppressed below the site's threshold, rounded as
its policy says, and withheld when the set differs from one whose count this project was
given before (a cohort's, a bin's, another task's split) by 1 to threshold-1 persons.
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
) -> dict[str, int | None]:
    """Each named set's size as released to `project` (None: withheld), remembered in the
    guard kept in `engine` (the site's ledger); a size released before is released again.
    The sets together count as released too (their sizes add up to it): when their union
    would isolate a few persons, every size is withheld."""
    guard = ReleaseGuard(engine, project, f"task {task_hash}", threshold, None)
    whole = frozenset().union(*sets.values())  # the sizes' sum counts it
    if whole and not guard.released_before(whole) and guard.isolates(whole):
        return dict.fromkeys(sets)
    before = {name for name, members in sets.items() if guard.released_before(members)}
    released: dict[str, int | None] = {}
    fresh: list[frozenset[int]] = [] if guard.released_before(whole) else [whole]
    for name, members in sets.items():
        size = suppress(len(members), threshold).count
        if size and name not in before:
            if guard.isolates(members):
                size = None
            else:
                fresh.append(members)
                guard.hold([members])
        released[name] = rounded(size, round_to, threshold)
    if fresh:
        guard.remember(fresh, counted=False)
    return released
