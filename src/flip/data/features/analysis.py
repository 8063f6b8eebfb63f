"""Federated analyses in simulation on per-site CSV files: each site computes its partials
(plain JSON dicts, passed through JSON as they would travel), and `flip.stats` combines them.

Rows with a missing value in a column an analysis needs are left out of that analysis and
counted per site, as the pooled reference leaves them out.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from scipy import stats as scipy_stats

from flip.data.features.csvfile import (
    DatasetError,
    SiteTable,
    Target,
    as_number,
    is_missing,
    looks_like_id,
)
from flip.stats import cox, describe, newton, regression, survival
from flip.stats.federated import INTERCEPT, coefficients
from flip.stats.model_cells import model_withheld
from flip.stats.suppression import total


def _travel(partial: dict) -> dict:
    """A partial as the combiner receives it: through JSON."""
    return json.loads(json.dumps(partial))


def read_sites(sites: dict[str, Path]) -> dict[str, SiteTable]:
    """Each site's CSV file, by site name."""
    if not sites:
        raise DatasetError("give at least one --site NAME=FILE.csv")
    return {name: SiteTable.read(name, path) for name, path in sites.items()}


def _require(tables: dict[str, SiteTable], columns: list[str]) -> None:
    for name, table in tables.items():
        absent = [c for c in columns if c not in table.columns]
        if absent:
            raise DatasetError(f"site {name}: no column {', '.join(absent)}")


class BeyondRange(DatasetError):
    """A number too large for the analysis' arithmetic; the message names its row."""


#: The largest magnitude of a value an analysis takes: its square and sums stay finite.
MAX_VALUE = 1e150


def numbers(table: SiteTable, column: str) -> np.ndarray:
    """A column as floats, NaN where missing; a value that is not a number is an error, and
    one that is infinite or beyond MAX_VALUE in a column of numbers is a BeyondRange."""
    values = table.columns[column]
    try:
        fast = np.array(values, dtype=float)
        if np.isfinite(fast).all():
            return _bounded(fast, table, column)
    except ValueError:
        pass
    out = np.empty(table.n_rows)
    infinite = None
    for i, value in enumerate(values):
        number = as_number(value)
        if number is None and not is_missing(value):
            if infinite is None and _is_infinite(value):
                infinite = f"site {table.name}: row {i + 2} column {column}: {value!r}"
                continue
            raise DatasetError(
                f"site {table.name}: row {i + 2} column {column}: {value!r} is not a number"
            )
        out[i] = math.nan if number is None else number
    if infinite is not None:
        raise BeyondRange(f"{infinite} is not a finite number (leave the cell empty if missing)")
    return _bounded(out, table, column)


def _is_infinite(value: str) -> bool:
    try:
        return math.isinf(float(value.strip()))
    except ValueError:
        return False


def _bounded(values: np.ndarray, table: SiteTable, column: str) -> np.ndarray:
    beyond = np.abs(values) > MAX_VALUE
    if beyond.any():
        row = int(np.argmax(beyond)) + 2
        raise BeyondRange(
            f"site {table.name}: row {row} column {column}: beyond ±{MAX_VALUE:g} "
            "(its square would overflow)"
        )
    return values


def _numbers_or_none(table: SiteTable, column: str) -> np.ndarray | None:
    try:
        return numbers(table, column)
    except BeyondRange:
        raise
    except DatasetError:
        return None


def parse(tables: dict[str, SiteTable], columns: list[str]) -> dict[str, dict[str, np.ndarray]]:
    """Per column, each site's values as floats when every site's are numbers (booleans as
    1/0, NaN where missing); a column left out here is categorical."""
    out = {}
    for column in columns:
        arrays = {site: _numbers_or_none(t, column) for site, t in tables.items()}
        if all(a is not None for a in arrays.values()):
            out[column] = arrays
    return out


def default_columns(tables: dict[str, SiteTable], leave: set[str]) -> list[str]:
    """Columns every site has, less `leave` and row identifiers."""
    first = next(iter(tables.values()))
    shared = [c for c in first.columns if all(c in t.columns for t in tables.values())]
    return [
        c
        for c in shared
        if c not in leave and not any(looks_like_id(c, t.columns[c]) for t in tables.values())
    ]


#: Table 1 counts a numeric column holding this many distinct values or fewer as levels:
#: its released n, sum and sum of squares would solve for each value's count.
FEW_VALUES = 3


def _few_valued(arrays: dict[str, np.ndarray]) -> bool:
    """Whether a numeric column holds at most FEW_VALUES distinct values over all sites (0/1,
    a 1/2 code): its mean and SD would give a small count of one of them away."""
    present = np.concatenate([a[~np.isnan(a)] for a in arrays.values()])
    return len(np.unique(present)) <= FEW_VALUES


def _level(value: float) -> str:
    """A number as a level's name: "1" for 1.0, else its shortest exact form ("0.1")."""
    return str(int(value)) if value.is_integer() else repr(float(value))


def table1(tables: dict[str, SiteTable], columns: list[str] | None, min_cell: int) -> dict:
    """Table 1: per column, each site's statistics, the combined ones, and the pairwise
    standardised mean differences between sites of numeric columns."""
    columns = columns or default_columns(tables, set())
    _require(tables, columns)
    numeric = parse(tables, columns)
    flags = {c: arrays for c, arrays in numeric.items() if _few_valued(arrays)}
    numeric = {c: arrays for c, arrays in numeric.items() if c not in flags}
    partials: dict[str, dict[str, dict]] = {}
    for name, table in tables.items():
        partials[name] = {}
        for column in columns:
            if column in numeric:
                partial = describe.numeric_partial(numeric[column][name], min_cell)
            elif column in flags:
                values = [None if math.isnan(v) else _level(v) for v in flags[column][name]]
                partial = describe.categorical_partial(values, min_cell)
            else:
                values = [None if is_missing(v) else v.strip() for v in table.columns[column]]
                partial = describe.categorical_partial(values, min_cell)
            partials[name][column] = _travel(partial)
    sites = {
        name: {c: describe.site_stats(p) for c, p in cols.items()}
        for name, cols in partials.items()
    }
    combined = {c: describe.combine([partials[name][c] for name in tables]) for c in columns}
    smd = {c: describe.smd({name: sites[name][c] for name in tables}) for c in numeric}
    withheld = {c: describe.withheld_sites(partials, c) for c in columns}
    return {
        "combined": combined,
        "sites": sites,
        "smd": smd,
        "withheld": withheld,
        "min_cell": min_cell,
    }


def _design(
    tables: dict[str, SiteTable], covariates: list[str], intercept: bool
) -> tuple[list[str], dict[str, np.ndarray]]:
    """Design matrices (NaN rows where a covariate is missing); categorical covariates as
    indicators of each level but the first, over the levels the sites hold."""
    numeric = parse(tables, covariates)
    levels = {
        c: sorted({v.strip() for t in tables.values() for v in t.columns[c] if not is_missing(v)})
        for c in covariates
        if c not in numeric
    }
    names = [INTERCEPT] if intercept else []
    for c in covariates:
        names += [f"{c}={level}" for level in levels[c][1:]] if c in levels else [c]
    matrices = {}
    for site, table in tables.items():
        parts = [np.ones((table.n_rows, 1))] if intercept else []
        for c in covariates:
            if c not in levels:
                parts.append(numeric[c][site][:, None])
                continue
            raw = [v.strip() for v in table.columns[c]]
            block = np.array([[float(v == level) for level in levels[c][1:]] for v in raw])
            block = block.reshape(table.n_rows, len(levels[c]) - 1)
            block[[is_missing(v) for v in raw]] = math.nan
            parts.append(block)
        matrices[site] = np.hstack(parts) if parts else np.empty((table.n_rows, 0))
    return names, matrices


def _events(table: SiteTable, column: str) -> np.ndarray:
    values = numbers(table, column)
    bad = ~np.isnan(values) & ~np.isin(values, [0.0, 1.0])
    if bad.any():
        row = int(np.argmax(bad)) + 2
        raise DatasetError(
            f"site {table.name}: row {row} column {column}: event must be 0/1 (or yes/no)"
        )
    return values


def survival_analysis(
    tables: dict[str, SiteTable],
    time: str,
    event: str,
    covariates: list[str],
    width: float,
    min_cell: int,
    group: str | None = None,
) -> dict:
    """Kaplan-Meier per site and combined (and per level of `group`), the log-rank test
    between sites (or between the groups), and with covariates a Cox model stratified by site."""
    _not_outcomes(covariates, [time, event])
    _require(tables, [time, event, *covariates, *([group] if group else [])])
    names, matrices = _design(tables, covariates, intercept=False)
    data, labels, left_out = {}, {}, {}
    for site, table in tables.items():
        t, e, x = numbers(table, time), _events(table, event), matrices[site]
        if (t < 0).any():
            row = int(np.argmax(t < 0)) + 2
            raise DatasetError(f"site {site}: row {row} column {time}: time is negative")
        g = np.array([v.strip() for v in table.columns[group]] if group else [""] * len(t))
        keep = ~np.isnan(t) & ~np.isnan(e) & ~np.isnan(x).any(axis=1)
        keep &= np.array([not is_missing(v) for v in g]) if group else True
        data[site], labels[site] = (t[keep], e[keep], x[keep]), g[keep]
        left_out[site] = int((~keep).sum())
    released, withheld = _km_partials(data, labels if group else None, width, min_cell)
    everyone = [p for parts in released.values() for _, p in parts]
    out = {
        "km": {
            "combined": survival.kaplan_meier(everyone),
            "sites": {
                site: survival.kaplan_meier([p for _, p in parts])
                for site, parts in released.items()
            },
        },
        "logrank": {
            **survival.logrank(everyone, [site for site, ps in released.items() for _ in ps]),
            "between": "sites",
        },
        "cox": None,
        "left_out": left_out,
        "withheld": withheld,
        "time_bin": width,
    }
    if group:
        by_level = [(level, p) for ps in released.values() for level, p in ps if level]
        levels = sorted({v for g in labels.values() for v in g.tolist()})
        out["km"]["groups"] = {
            level: survival.kaplan_meier([p for o, p in by_level if o == level]) for level in levels
        }
        out["logrank"] = {
            **survival.logrank([p for _, p in by_level], [o for o, _ in by_level]),
            "between": group,
        }
    if names:
        out["cox"] = _cox(data, names, min_cell)
    return out


def _km_partials(
    data: dict, labels: dict | None, width: float, min_cell: int
) -> tuple[dict[str, list[tuple[str, dict]]], list[str]]:
    """Each site's released KM partials as (group level or "", partial), and what is withheld.

    With groups, a site releases one partial per level, or, when any level it holds is too
    small to release, only its overall partial: the overall partial beside the other levels'
    would give the small level's counts away by difference."""
    released, withheld = {}, []
    for site, (t, e, _) in data.items():
        overall = [("", _travel(survival.km_partial(t, e, width, min_cell)))]
        if not overall[0][1]["bins"]:
            withheld.append(site)
        if labels is None or not overall[0][1]["bins"]:
            released[site] = overall
            continue
        parts = [
            (level, _travel(survival.km_partial(t[rows], e[rows], width, min_cell)))
            for level in sorted(set(labels[site].tolist()))
            for rows in [labels[site] == level]
        ]
        if all(p["bins"] for _, p in parts):
            released[site] = parts
        else:
            released[site] = overall
            withheld.append(f"{site} by group")
    return released, withheld


def _withheld(designs: dict[str, np.ndarray], names: list[str], min_cell: int) -> dict[str, str]:
    """Why each site that takes no part in a model does not (`model_withheld`)."""
    return {
        site: reason
        for site, x in designs.items()
        if (reason := model_withheld(x, names, min_cell)) is not None
    }


def _not_outcomes(covariates: list[str], outcomes: list[str]) -> None:
    """Refuse a covariate that is the model's outcome (its fit is degenerate: coef 1, SE 0)."""
    both = [c for c in dict.fromkeys(covariates) if c in outcomes]
    if both:
        raise DatasetError(f"covariate {', '.join(both)} is the outcome: drop it")


def _check_varies(designs: list[np.ndarray], names: list[str], within_sites: bool) -> None:
    """Refuse a covariate with no variance in the rows used (pooled, or within every site for
    a model stratified by site): its coefficient cannot be estimated."""
    stats = [(len(x), x.mean(axis=0), ((x - x.mean(axis=0)) ** 2).sum(axis=0)) for x in designs]
    n = sum(k for k, _, _ in stats)
    mean = sum(k * m for k, m, _ in stats) / n
    spread = sum(m2 if within_sites else m2 + k * (m - mean) ** 2 for k, m, m2 in stats)
    for j, name in enumerate(names):
        if name != INTERCEPT and spread[j] <= n * (1e-13 * max(1.0, abs(mean[j]))) ** 2:
            where = "within every site" if within_sites else "in the rows used"
            raise DatasetError(f"covariate {name} is constant {where}: drop it")


def _cox(data: dict, names: list[str], min_cell: int) -> dict:
    designs = {site: np.column_stack([x, e]) for site, (_, e, x) in data.items()}
    withheld = _withheld(designs, [*names, "event"], min_cell)
    data = {site: rows for site, rows in data.items() if site not in withheld}
    if not data:
        raise DatasetError(f"no site can take part in the Cox model: {_why(withheld)}")
    _check_varies([x for _, _, x in data.values()], names, within_sites=True)

    def site_fn(t, e, x):
        return lambda beta: _travel(cox.cox_partial(t, e, x, beta))

    sites = [site_fn(*rows) for rows in data.values()]
    fit = newton.fit(sites, len(names))
    counts = [cox.cox_counts(e, min_cell) for _, e, _ in data.values()]
    return {
        **coefficients(names, fit["beta"], fit["covariance"], scipy_stats.norm),
        "n": total([c["n"] for c in counts]),
        "events": total([c["events"] for c in counts]),
        "sites": dict(zip(data, counts, strict=True)),
        "withheld": withheld,
        "strata": "site",
        "steps": fit["steps"],
    }


def _why(withheld: dict[str, str]) -> str:
    return "; ".join(f"site {site}: {reason}" for site, reason in withheld.items())


def regression_analysis(
    tables: dict[str, SiteTable],
    target: str,
    family: str,
    covariates: list[str] | None,
    positive: str | None,
    min_cell: int,
) -> dict:
    """Linear (one round of sufficient statistics) or logistic (federated Newton/IRLS)
    regression of `target` on the covariates, with an intercept and classical SEs; a site
    with fewer than min_cell complete rows, or a small indicator cell, takes no part."""
    if family not in ("linear", "logistic"):
        raise DatasetError(f"family {family!r}: choose linear or logistic")
    covariates = covariates or default_columns(tables, {target})
    rule = Target.parse(target, positive) if family == "logistic" else None
    _not_outcomes(covariates, [target, *([rule.column] if rule else [])])
    _require(tables, [target, *covariates])
    names, matrices = _design(tables, covariates, intercept=True)
    data, left_out = {}, {}
    for site, table in tables.items():
        if rule is not None:
            _require({site: table}, [rule.column])
            labels = rule.labels(table.columns[rule.column], site)
            y = np.array([math.nan if v is None else v for v in labels])
        else:
            y = numbers(table, target)
        x = matrices[site]
        keep = ~np.isnan(y) & ~np.isnan(x).any(axis=1)
        data[site], left_out[site] = (x[keep], y[keep]), int((~keep).sum())
    outcome = [f"{target} (outcome)"] if family == "logistic" else []
    designs = {site: np.column_stack([x, y]) if outcome else x for site, (x, y) in data.items()}
    withheld = _withheld(designs, names + outcome, min_cell)
    data = {site: rows for site, rows in data.items() if site not in withheld}
    if not data:
        raise DatasetError(f"no site can take part in this regression: {_why(withheld)}")
    _check_varies([x for x, _ in data.values()], names, within_sites=False)
    n = sum(len(y) for _, y in data.values())
    if family == "linear":
        parts = [_travel(regression.linear_partial(x[:, 1:], y)) for x, y in data.values()]
        fit = regression.linear_fit(parts)
        dist, steps = scipy_stats.t(n - len(names)), 1
    else:

        def site_fn(x, y):
            return lambda beta: _travel(regression.logistic_partial(x, y, beta))

        fit = newton.fit([site_fn(*r) for r in data.values()], len(names))
        dist, steps = scipy_stats.norm, fit["steps"]
    return {
        "family": family,
        **coefficients(names, fit["beta"], fit["covariance"], dist),
        "n": n,
        "left_out": left_out,
        "withheld": withheld,
        "steps": steps,
    }
