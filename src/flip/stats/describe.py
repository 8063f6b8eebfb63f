"""Table 1: per-site partials of numeric and categorical columns, combined across sites.

Numeric partial: n, missing, sum, m2 (sum of squared deviations from the site's own mean:
with n and sum it fixes the sum of squares, and merges without cancellation), and a quantile
sketch. Combined n, mean and SD (n - 1) are exact; median and quartiles come from the sketches.
Categorical partial: n, missing and per-level counts, small cells suppressed at the site.
A site whose column holds fewer than min_cell values releases only that fact ("n": "<10",
"missing": "withheld": the site's row count less missing would give n away). A small missing
count is hidden the same way ("missing": "<10") and n beside it withheld (the row count less
n would give it away): a numeric column then releases nothing more at that site; a
categorical one its level counts, with missing suppressed among them as one more cell.
"""

from __future__ import annotations

import math
from collections import Counter
from itertools import combinations

import numpy as np

from flip.stats import sketch as sketches
from flip.stats.suppression import WITHHELD, hidden, is_small, suppress_counts, total

QUARTILES = (0.5, 0.25, 0.75)


def numeric_partial(values: np.ndarray, min_cell: int) -> dict:
    """A site's partial for a numeric column (NaN = missing)."""
    present = values[~np.isnan(values)]
    n, missing = len(present), len(values) - len(present)
    if is_small(n, min_cell):
        return {"kind": "numeric", "n": hidden(min_cell), "missing": WITHHELD}
    if is_small(missing, min_cell):
        return {"kind": "numeric", "n": WITHHELD, "missing": hidden(min_cell)}
    total = float(present.sum())
    mean = total / n if n else 0.0
    return {
        "kind": "numeric",
        "n": n,
        "missing": missing,
        "sum": total,
        "m2": float(((present - mean) ** 2).sum()),
        "sketch": sketches.sketch(present, min_cell),
    }


def categorical_partial(values: list[str | None], min_cell: int) -> dict:
    """A site's partial for a categorical column (None = missing)."""
    counts = Counter(v for v in values if v is not None)
    n, missing = sum(counts.values()), len(values) - sum(counts.values())
    if is_small(n, min_cell):
        return {"kind": "categorical", "n": hidden(min_cell), "missing": WITHHELD}
    cells = dict(sorted(counts.items()))
    if not is_small(missing, min_cell):
        return {
            "kind": "categorical",
            "n": n,
            "missing": missing,
            "counts": suppress_counts(cells, min_cell),
        }
    shown = suppress_counts(cells | {_MISSING_CELL: missing}, min_cell)
    shown.pop(_MISSING_CELL)
    return {"kind": "categorical", "n": WITHHELD, "missing": hidden(min_cell), "counts": shown}


#: Missing values as a cell among a categorical column's levels (no CSV level is this).
_MISSING_CELL = "\x00missing"


def released(partials: list[dict]) -> list[dict]:
    """The partials that carry values (not withheld as too small)."""
    return [p for p in partials if isinstance(p["n"], int)]


def left_out(partial: dict) -> bool:
    """Whether a site's partial takes no part in its column's combined statistics: a numeric
    one whose n is not released, a categorical one without level counts."""
    if partial["kind"] == "categorical":
        return "counts" not in partial
    return not isinstance(partial["n"], int)


def withheld_sites(columns: dict[str, dict[str, dict]], column: str) -> list[str]:
    """The sites (of `columns`, each site's partials by column) the combined statistics of
    `column` leave out, since they released none of its values."""
    return [name for name, partials in columns.items() if left_out(partials[column])]


def _least(n: int | str) -> int:
    """The least a site's n can be: itself, 1 for a hidden "<N", 0 for "withheld"."""
    if isinstance(n, int):
        return n
    return 1 if n.startswith("<") else 0


def combine_numeric(partials: list[dict]) -> dict:
    """Combined n, mean, SD (n - 1) exactly (Chan et al.'s merge); quantiles from sketches.
    Where a site released no values the statistics are over the others, and n is written
    ">=N", a lower bound (the released n's and the least each withheld one can be)."""
    shown = released(partials)
    n = sum(p["n"] for p in shown)
    missing = total([p["missing"] for p in partials])
    withheld = [p["n"] for p in partials if not isinstance(p["n"], int)]
    count = f">={n + sum(_least(w) for w in withheld)}" if withheld else n
    if n == 0:
        return _numeric_stats(count, missing, None, None, [None, None, None])
    return _numeric_stats(count, missing, *_moments(shown, n))


def _moments(shown: list[dict], n: int) -> tuple[float, float | None, list]:
    """Mean, SD (n - 1) and quartiles of released partials holding n > 0 values."""
    mean = sum(p["sum"] for p in shown) / n
    m2 = sum(p["m2"] + p["n"] * (p["sum"] / p["n"] - mean) ** 2 for p in shown if p["n"])
    sd = math.sqrt(m2 / (n - 1)) if n > 1 else None
    qs = sketches.quantiles([p["sketch"] for p in shown], list(QUARTILES))
    return mean, sd, qs


def _numeric_stats(n: int | str, missing: int | str, mean, sd, qs: list) -> dict:
    median, q1, q3 = qs
    return {
        "n": n,
        "missing": missing,
        "mean": mean,
        "sd": sd,
        "median": median,
        "q1": q1,
        "q3": q3,
    }


def combine_categorical(partials: list[dict]) -> dict:
    """Combined counts: exact where every site released the cell, else ">=N" (a lower bound:
    each suppressed cell holds at least one, a site that released no counts at least none)."""
    shown = [p for p in partials if "counts" in p]
    some_left_out = len(shown) < len(partials)
    levels = sorted({level for p in shown for level in p["counts"]})
    counts: dict[str, int | str] = {}
    for level in levels:
        cells = [p["counts"].get(level, 0) for p in shown]
        known = sum(c for c in cells if isinstance(c, int))
        unknown = sum(1 for c in cells if not isinstance(c, int))
        exact = not unknown and not some_left_out
        counts[level] = known if exact else f">={known + unknown}"
    return {
        "n": _n_total(partials),
        "missing": total([p["missing"] for p in partials]),
        "counts": counts,
    }


def _n_total(partials: list[dict]) -> int | str:
    """The partials' n summed; where a site withheld its n, ">=N" with the least it can be
    (its released counts and one for each hidden one; one for a hidden "<N" without counts)."""
    least = sum(
        p["n"]
        if isinstance(p["n"], int)
        else sum(c if isinstance(c, int) else 1 for c in p["counts"].values())
        if "counts" in p
        else _least(p["n"])
        for p in partials
    )
    return least if all(isinstance(p["n"], int) for p in partials) else f">={least}"


def site_stats(partial: dict) -> dict:
    """One site's released statistics, from its partial alone."""
    if partial["kind"] == "numeric":
        if not isinstance(partial["n"], int):
            return _numeric_stats(partial["n"], partial["missing"], None, None, [None] * 3)
        return combine_numeric([partial])
    if "counts" not in partial:  # too few values: the site released none of its levels
        return {"n": partial["n"], "missing": partial["missing"]}
    return {"n": partial["n"], "missing": partial["missing"], "counts": partial["counts"]}


def combine(partials: list[dict]) -> dict:
    """Combined statistics of one column over its sites' partials."""
    kinds = {p["kind"] for p in partials}
    if len(kinds) != 1:
        raise ValueError(f"sites disagree on the column's kind: {sorted(kinds)}")
    if kinds.pop() == "numeric":
        return combine_numeric(partials)
    return combine_categorical(partials)


def smd(stats: dict[str, dict]) -> dict[str, float]:
    """Standardised mean differences between each pair of sites' numeric statistics:
    (mean_a - mean_b) / sqrt((sd_a^2 + sd_b^2) / 2)."""
    out: dict[str, float] = {}
    shown = {name: s for name, s in stats.items() if s.get("sd")}
    for a, b in combinations(sorted(shown), 2):
        sa, sb = shown[a], shown[b]
        out[f"{a} vs {b}"] = (sa["mean"] - sb["mean"]) / math.sqrt(
            (sa["sd"] ** 2 + sb["sd"] ** 2) / 2
        )
    return out
