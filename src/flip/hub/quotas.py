"""Per-user caps over the per-project ones: a researcher making many projects does not
multiply what the project caps allow (undecided tasks in every site's poll, analyses running)."""

from __future__ import annotations

from fastapi import HTTPException, status

#: Projects one researcher may own (admins are not counted); a grown hub's busiest has ~300.
MAX_PROJECTS_PER_USER = 500
#: Tasks that some site has yet to decide, over every project one user owns.
MAX_OPEN_TASKS_PER_OWNER = 100
#: Analyses running at once, over every project one user owns.
MAX_RUNNING_ANALYSES_PER_OWNER = 100


def refuse_over(count: int, most: int, why: str) -> None:
    """429 with `why` (formatted with `count` and `most`) when `count` is at or over `most`."""
    if count >= most:
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, why.format(count=count, most=most))
