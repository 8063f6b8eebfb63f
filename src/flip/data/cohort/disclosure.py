"""Statistical disclosure control: counts below a site's threshold never leave it."""

from __future__ import annotations

from pydantic import BaseModel


class SiteCount(BaseModel):
    """A count as released by a site: the number, or None with `suppressed` set."""

    count: int | None
    suppressed: bool
    threshold: int


def suppress(count: int, threshold: int) -> SiteCount:
    """Release `count` only when it is zero or at least `threshold`; zero reveals no one."""
    if threshold < 1:
        raise ValueError("the threshold must be at least 1")
    if 0 < count < threshold:
        return SiteCount(count=None, suppressed=True, threshold=threshold)
    return SiteCount(count=count, suppressed=False, threshold=threshold)
