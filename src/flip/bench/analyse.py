"""Time federated Table 1 and Kaplan-Meier on generated per-site CSV files, against the same
statistics computed once on the pooled arrays with numpy (the reference run alongside)."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np

from flip.bench.ingest import Figure
from flip.data.features import analysis
from flip.stats import describe, survival

LEVELS = ["typical", "atypical", "non-anginal", "asymptomatic"]


def write_sites(folder: Path, sites: int, rows: int, seed: int = 0) -> dict[str, Path]:
    """`sites` CSV files of `rows` patients each: age, sex, sbp, bmi, chest pain, follow-up."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = {}
    for k in range(sites):
        age = rng.normal(55 + 3 * k, 12, rows)
        t = rng.exponential(900 * np.exp(-(age - 55) / 30))
        censor = rng.uniform(0, 1800, rows)
        columns = {
            "age": age.round(0),
            "sex": rng.choice(["F", "M"], rows),
            "sbp": rng.normal(125, 15, rows).round(1),
            "bmi": rng.lognormal(3.3, 0.18, rows).round(1),
            "chest_pain_type": rng.choice(LEVELS, rows),
            "days": np.ceil(np.minimum(t, censor)),
            "died": (t <= censor).astype(int),
        }
        paths[f"site{k + 1}"] = folder / f"site{k + 1}.csv"
        with paths[f"site{k + 1}"].open("w", newline="") as handle:
            out = csv.writer(handle)
            out.writerow(columns)
            out.writerows(zip(*columns.values(), strict=True))
    return paths


def _timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def _pooled_reference(arrays: list[dict]) -> None:
    for column in ("age", "sbp", "bmi"):
        values = np.concatenate([a[column] for a in arrays])
        values.mean(), values.std(ddof=1), np.quantile(values, [0.25, 0.5, 0.75])
    for column in ("sex", "chest_pain_type"):
        np.unique(np.concatenate([a[column] for a in arrays]), return_counts=True)


def _pooled_km(arrays: list[dict]) -> None:
    t = np.concatenate([a["days"] for a in arrays])
    e = np.concatenate([a["died"] for a in arrays])
    _, inverse = np.unique(t, return_inverse=True)
    d = np.bincount(inverse, weights=e)
    left = np.bincount(inverse)
    at_risk = len(t) - np.concatenate([[0], np.cumsum(left)[:-1]])
    np.cumprod(1 - d / at_risk)


def run(work: Path, sites: int = 3, rows: int = 100_000, min_cell: int = 10) -> list[Figure]:
    """Figures for Table 1 and Kaplan-Meier on `sites` files of `rows` rows."""
    paths = write_sites(work, sites, rows)
    tables, read = _timed(lambda: analysis.read_sites(paths))
    columns = ["age", "sex", "sbp", "bmi", "chest_pain_type"]
    _, table1 = _timed(lambda: analysis.table1(tables, columns, min_cell))
    arrays = [
        {
            **{c: analysis.numbers(t, c) for c in ("age", "sbp", "bmi", "days", "died")},
            **{c: np.array(t.columns[c]) for c in ("sex", "chest_pain_type")},
        }
        for t in tables.values()
    ]

    def table1_math():
        for column in ("age", "sbp", "bmi"):
            describe.combine([describe.numeric_partial(a[column], min_cell) for a in arrays])
        for column in ("sex", "chest_pain_type"):
            parts = [describe.categorical_partial(a[column].tolist(), min_cell) for a in arrays]
            describe.combine(parts)

    def km_math():
        parts = [survival.km_partial(a["days"], a["died"], 1.0, min_cell) for a in arrays]
        survival.kaplan_meier(parts), survival.logrank(parts)

    _, math_t1 = _timed(table1_math)
    _, pooled_t1 = _timed(lambda: _pooled_reference(arrays))
    _, km = _timed(lambda: analysis.survival_analysis(tables, "days", "died", [], 1.0, min_cell))
    _, math_km = _timed(km_math)
    _, pooled_km = _timed(lambda: _pooled_km(arrays))
    scale = f"{sites} sites x {rows:,} rows"
    return [
        Figure("read CSV files", read, "s", scale),
        Figure(
            "Table 1, from the read files", table1, "s", "5 columns: parse + partials + combine"
        ),
        Figure("Table 1, partials + combine", math_t1, "s", "on parsed arrays"),
        Figure("pooled numpy reference", pooled_t1, "s", "mean, sd, quartiles, counts"),
        Figure("Table 1 math / pooled", math_t1 / pooled_t1, "x", "the price of federating"),
        Figure("Kaplan-Meier + log-rank, from files", km, "s", "parse + partials + combine"),
        Figure("Kaplan-Meier + log-rank math", math_km, "s", "on parsed arrays, daily grid"),
        Figure("pooled numpy KM reference", pooled_km, "s", "one curve, no bands"),
        Figure("KM math / pooled", math_km / pooled_km, "x", ""),
    ]
