"""The shape of a site's release, checked before a coordinator combines it.

`flip.stats.federated` says what each round of an analysis releases; `problems` reads one
round's releases and says, per site, why its release cannot be combined (a missing key, a
value of the wrong type or size, columns other than the other sites'), so a coordinator can
leave that site out with the reason and combine the rest. Nothing here fits a model: a site
whose rows alone cannot be fitted (a constant covariate) is well formed.
"""

from __future__ import annotations

import math
from collections import Counter

from flip.stats import describe
from flip.stats.federated import terms

#: The most digits of an OMOP concept id (a 64-bit integer) a release's key may have.
CONCEPT_DIGITS = 19
#: A released count: an integer, or a suppressed one written as text ("<10", ">=3", "withheld").
Count = int | str


def problems(spec: dict, round_: int, releases: dict[str, object]) -> dict[str, str]:
    """Per site whose release cannot be combined with the others in this round, a one-line
    reason; the sites not named are safe to combine."""
    found: dict[str, str] = {}
    for name, release in releases.items():
        try:
            _check(spec, round_, release)
        except (ValueError, TypeError) as exc:
            found[name] = str(exc)
    if spec.get("kind") == "table1" and round_ == 0:
        well_formed = {n: r for n, r in releases.items() if n not in found}
        found |= _odd_columns(well_formed)
    return found


def _check(spec: dict, round_: int, release: object) -> None:
    _mapping(release, "the release")
    kind = spec.get("kind")
    if round_ > 0:
        _newton(_key(release, "newton"), len(terms(spec)), "newton")
    elif kind == "table1":
        columns = _mapping(_key(release, "columns"), "columns")
        if not columns:
            raise ValueError("columns: none released")
        for column, partial in columns.items():
            _column(partial, f"column {column!r}")
    elif kind == "survival":
        _km(_key(release, "km"))
        _count(_key(release, "left_out"), "left_out")
        if _key(release, "cox") is not None:
            _newton(release["cox"], len(terms(spec)), "cox")
            counts = _mapping(_key(release, "counts"), "counts")
            _count(_key(counts, "n", "counts"), "counts.n")
            _count(_key(counts, "events", "counts"), "counts.events")
    elif kind == "regression":
        _regression(spec, release)
    elif kind == "harmonisation":
        _harmonisation(release)
    else:
        raise ValueError(f"analysis kind {kind!r} takes no release")


def _regression(spec: dict, release: dict) -> None:
    if not isinstance(_key(release, "withheld"), bool):
        raise TypeError("withheld: not true or false")
    _count(_key(release, "left_out"), "left_out")
    n = _key(release, "n")
    if release["withheld"]:
        return
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise TypeError("n: not a count")
    size = len(terms(spec))
    if spec.get("family") == "linear":
        linear = _mapping(_key(release, "linear"), "linear")
        _count(_key(linear, "n", "linear"), "linear.n")
        _numbers(_key(linear, "mean", "linear"), (size,), "linear.mean")
        _numbers(_key(linear, "comoment", "linear"), (size, size), "linear.comoment")
    else:
        _newton(_key(release, "newton"), size, "newton")


def _column(partial: object, where: str) -> None:
    _mapping(partial, where)
    kind = _key(partial, "kind", where)
    n = _count(_key(partial, "n", where), f"{where} n")
    _count(_key(partial, "missing", where), f"{where} missing")
    if kind not in ("numeric", "categorical"):
        raise ValueError(f"{where}: kind {kind!r} is neither numeric nor categorical")
    if kind == "categorical":  # a withheld n may come with the counts that are shown
        if isinstance(n, int) or "counts" in partial:
            counts = _mapping(_key(partial, "counts", where), f"{where} counts")
            for level, count in counts.items():
                _count(count, f"{where} level {level!r}")
        return
    if isinstance(n, str):
        return
    _numbers(_key(partial, "sum", where), (), f"{where} sum")
    _numbers(_key(partial, "m2", where), (), f"{where} m2")
    if partial["m2"] < 0:
        raise ValueError(f"{where} m2: negative (a sum of squares)")
    _mapping(_key(partial, "sketch", where), f"{where} sketch")
    try:  # the site's own statistics, as the coordinator reads them (no fit: cannot fail on data)
        describe.site_stats(partial)
    except (LookupError, TypeError, ValueError, ArithmeticError, AttributeError) as exc:
        raise ValueError(f"{where} sketch: {type(exc).__name__} {exc}") from None


def _km(km: object) -> None:
    bins = _key(_mapping(km, "km"), "bins", "km")
    if not isinstance(bins, list):
        raise TypeError("km.bins: not a list")
    previous = -math.inf
    for row in bins:
        _numbers(row, (3,), "km.bins row")
        end, *counts = row
        if end < 0 or end <= previous:
            raise ValueError("km.bins: end times not increasing from 0")
        if any(c < 0 or c != int(c) for c in counts):
            raise ValueError("km.bins row: events or censored not a whole count")
        previous = end


def _harmonisation(release: dict) -> None:
    for cid, concept in _mapping(_key(release, "concepts"), "concepts").items():
        where = f"concept {str(cid)[:40]}"
        if not (str(cid).isascii() and str(cid).isdigit() and len(str(cid)) <= CONCEPT_DIGITS):
            raise ValueError(f"{where}: not a concept id")
        _mapping(concept, where)
        _count(_key(concept, "rows", where), f"{where} rows")
        for code, n in _mapping(_key(concept, "sources", where), f"{where} sources").items():
            _count(n, f"{where} source {code!r}")
    for table, counts in _mapping(_key(release, "tables"), "tables").items():
        unmapped = _key(_mapping(counts, f"table {table}"), "unmapped", f"table {table}")
        for code, n in _mapping(unmapped, f"table {table} unmapped").items():
            _count(n, f"table {table} unmapped {code!r}")


def _newton(partial: object, size: int, where: str) -> None:
    """A Newton partial: a finite log-likelihood, a gradient and a Hessian of the model's size."""
    _mapping(partial, where)
    _numbers(_key(partial, "loglik", where), (), f"{where}.loglik")
    _numbers(_key(partial, "gradient", where), (size,), f"{where}.gradient")
    _numbers(_key(partial, "hessian", where), (size, size), f"{where}.hessian")


def _odd_columns(releases: dict[str, dict]) -> dict[str, str]:
    """The sites whose Table 1 columns (names and kinds) differ from those most sites released;
    with no majority, every site is named."""
    shapes = {
        name: tuple(sorted((c, p["kind"]) for c, p in r["columns"].items()))
        for name, r in releases.items()
    }
    if len(set(shapes.values())) <= 1:
        return {}
    (common, votes), *rest = Counter(shapes.values()).most_common()
    if rest and rest[0][1] == votes:
        return {
            name: "its columns differ from other sites' and no shape is most common"
            for name in shapes
        }
    expected = ", ".join(f"{c} ({k})" for c, k in common)
    return {
        name: f"its columns differ from the other sites' ({expected})"
        for name, shape in shapes.items()
        if shape != common
    }


def _key(found: dict, key: str, where: str = "the release") -> object:
    if key not in found:
        raise ValueError(f"{where} has no {key!r}")
    return found[key]


def _mapping(value: object, where: str) -> dict:
    if not isinstance(value, dict):
        raise TypeError(f"{where}: not an object")
    return value


def _count(value: object, where: str) -> Count:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(f"{where}: not a count")
    if isinstance(value, int) and value < 0:
        raise ValueError(f"{where}: negative")
    return value


def _numbers(value: object, shape: tuple[int, ...], where: str) -> None:
    """A finite number (shape ()), or nested lists of them of exactly `shape`."""
    if not shape:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{where}: not a number")
        if not math.isfinite(value):
            raise ValueError(f"{where}: not finite")
        return
    if not isinstance(value, list) or len(value) != shape[0]:
        raise ValueError(f"{where}: not a list of {shape[0]}")
    for item in value:
        _numbers(item, shape[1:], where)
