"""Statistical disclosure control: counts below a site's threshold never leave it."""

from __future__ import annotations

from pydantic import BaseModel, Field


class SiteCount(BaseModel):
    """A count as released by a site: the number, or None with `suppressed` set.

    `histograms` maps a breakdown ("age", "sex") to its bins, each released like
    the count (None when suppressed).
    """

    count: int | None
    suppressed: bool
    threshold: int
    histograms: dict[str, dict[str, int | None]] = Field(default_factory=dict)


def suppress(count: int, threshold: int) -> SiteCount:
    """Release `count` only when it is zero or at least `threshold`; zero reveals no one."""
    if threshold < 1:
        raise ValueError("the threshold must be at least 1")
    if 0 < count < threshold:
        return SiteCount(count=None, suppressed=True, threshold=threshold)
    return SiteCount(count=count, suppressed=False, threshold=threshold)


def suppress_bins(bins: dict[str, int], threshold: int) -> dict[str, int | None]:
    """Suppress each bin below `threshold`; when only one is, suppress the next smallest too.

    The second suppression stops anyone from recovering a lone suppressed bin by
    subtracting the released ones from the released total.
    """
    released: dict[str, int | None] = {k: suppress(v, threshold).count for k, v in bins.items()}
    hidden = [k for k, v in released.items() if v is None]
    shown = sorted((v, k) for k, v in released.items() if v)
    if len(hidden) == 1 and shown:
        released[shown[0][1]] = None
    return released
