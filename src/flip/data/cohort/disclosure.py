"""Statistical disclosure control: counts below a site's threshold never leave it."""

from __future__ import annotations

from pydantic import BaseModel, Field


class SiteCount(BaseModel):
    """A count as released by a site: the number, or None with `suppressed` set.

    `histograms` maps a breakdown ("age", "sex") to its bins, each released like
    the count (None when suppressed); `attrition`, for a Circe cohort, each step's count
    (primary criteria, then each inclusion rule) as `flip.stats.attrition` writes them.
    """

    count: int | None
    suppressed: bool
    threshold: int
    histograms: dict[str, dict[str, int | None]] = Field(default_factory=dict)
    attrition: list[int | str] = Field(default_factory=list)


def suppress(count: int, threshold: int) -> SiteCount:
    """Release `count` only when it is zero or at least `threshold`; zero reveals no one."""
    if threshold < 1:
        raise ValueError("the threshold must be at least 1")
    if 0 < count < threshold:
        return SiteCount(count=None, suppressed=True, threshold=threshold)
    return SiteCount(count=count, suppressed=False, threshold=threshold)


def suppress_bins(
    bins: dict[str, int], threshold: int, hidden: set[str] | None = None
) -> dict[str, int | None]:
    """Suppress each bin below `threshold` (and those in `hidden`), then more, smallest first,
    until the hidden bins are none, or at least two that hold `threshold` or more between them.

    The secondary suppression stops anyone from recovering hidden bins by subtracting
    the released ones from the released total: what the subtraction gives is never
    one bin, nor a small group.
    """
    released: dict[str, int | None] = {
        k: None if k in (hidden or set()) else suppress(v, threshold).count for k, v in bins.items()
    }
    while True:
        gone = [k for k, v in released.items() if v is None]
        if not gone or (len(gone) > 1 and sum(bins[k] for k in gone) >= threshold):
            return released
        shown = sorted((v, k) for k, v in released.items() if v)
        if not shown:
            return released
        released[shown[0][1]] = None


def rounded(count: int | None, base: int, threshold: int) -> int | None:
    """A released count to the nearest multiple of `base` (halves up), never below the first
    multiple at or above `threshold`; None and zero stay as they are."""
    if base < 1:
        raise ValueError("the rounding base must be at least 1")
    if not count or base == 1:
        return count
    least = -(-threshold // base) * base
    return max(least, (count + base // 2) // base * base)
