"""Table 1 partials combined across sites equal the pooled statistics."""

import json

import numpy as np

from flip.stats import describe
from flip.stats.sketch import DEFAULT_ALPHA, quantiles, sketch
from tests.stats.conftest import split


def _travel(partial):
    return json.loads(json.dumps(partial))


def test_combined_mean_and_sd_are_exact(rng):
    pooled = rng.lognormal(4, 0.6, 20_000) + 1e6  # a large offset: sums of squares would cancel
    pooled[rng.random(len(pooled)) < 0.05] = np.nan
    parts = [_travel(describe.numeric_partial(pooled[i], 10)) for i in split(len(pooled), rng)]
    combined = describe.combine(parts)
    present = pooled[~np.isnan(pooled)]
    assert combined["n"] == len(present)
    assert combined["missing"] == int(np.isnan(pooled).sum())
    assert np.isclose(combined["mean"], present.mean(), rtol=1e-13)
    assert np.isclose(combined["sd"], present.std(ddof=1), rtol=1e-9)


def test_quantiles_are_within_the_sketch_error_bound(rng):
    pooled = np.concatenate([rng.normal(50, 12, 30_000), -rng.exponential(3, 2_000), np.zeros(50)])
    parts = [_travel(describe.numeric_partial(pooled[i], 10)) for i in split(len(pooled), rng)]
    combined = describe.combine(parts)
    for key, q in (("median", 0.5), ("q1", 0.25), ("q3", 0.75)):
        truth = np.quantile(pooled, q)
        bound = 2 * DEFAULT_ALPHA / (1 - DEFAULT_ALPHA)
        assert abs(combined[key] - truth) <= bound * abs(truth) + 1e-9, key
    tail = quantiles([p["sketch"] for p in parts], [0.01, 0.999])
    assert abs(tail[0] - np.quantile(pooled, 0.01)) <= 0.05 * abs(np.quantile(pooled, 0.01))
    assert abs(tail[1] - np.quantile(pooled, 0.999)) <= 0.05 * np.quantile(pooled, 0.999)


def test_quantiles_of_integer_values_are_exact(rng):
    ages = rng.normal(60, 12, 9_000).round()
    parts = [_travel(describe.numeric_partial(ages[i], 10)) for i in split(len(ages), rng)]
    combined = describe.combine(parts)
    assert [combined["q1"], combined["median"], combined["q3"]] == list(
        np.quantile(ages, [0.25, 0.5, 0.75])
    )


def test_every_released_sketch_run_holds_at_least_min_cell_values(rng):
    values = rng.standard_cauchy(5_000)
    runs = sketch(values, 10)["runs"]
    assert all(run[2] >= 10 for run in runs)
    assert sum(run[2] for run in runs) == len(values)


def test_categorical_counts_combine_and_suppressed_cells_are_lower_bounds():
    a = ["x"] * 40 + ["y"] * 30 + ["z"] * 3 + [None] * 12
    b = ["x"] * 25 + ["y"] * 12 + ["z"] * 11
    parts = [_travel(describe.categorical_partial(v, 10)) for v in (a, b)]
    assert parts[0]["counts"] == {"x": 40, "y": "<10", "z": "<10"}
    combined = describe.combine(parts)
    assert combined == {"n": 121, "missing": 12, "counts": {"x": 65, "y": ">=13", "z": ">=12"}}


def test_a_site_with_fewer_than_min_cell_values_releases_only_that():
    part = describe.numeric_partial(np.array([1.0, 2.0, np.nan]), 10)
    assert part == {"kind": "numeric", "n": "<10", "missing": "withheld"}
    big = describe.numeric_partial(np.arange(100.0), 10)
    combined = describe.combine([part, big])
    assert combined["n"] == ">=101", "the small site holds at least one value, left out"
    assert combined["missing"] == ">=0"
    assert combined["mean"] == describe.combine([big])["mean"], "over the released site"


def test_missing_beside_a_hidden_n_is_withheld_so_n_is_not_the_rows_less_missing():
    """A column with 3 values in 100 rows released missing = 97, so n = 100 - 97 = 3."""
    sparse = np.full(100, np.nan)
    sparse[:3] = 1.0
    part = describe.numeric_partial(sparse, 10)
    assert part["n"] == "<10" and part["missing"] == "withheld"
    levels = ["a"] * 3 + [None] * 97
    assert describe.categorical_partial(levels, 10)["missing"] == "withheld"
    assert describe.site_stats(part)["missing"] == "withheld"


def test_smd_between_sites():
    stats = {"a": {"mean": 10.0, "sd": 2.0}, "b": {"mean": 12.0, "sd": 2.0}}
    assert describe.smd(stats) == {"a vs b": -1.0}


def test_a_small_missing_count_is_hidden_and_n_beside_it_withheld():
    """A column with 3 missing in 100 rows: missing = 3 is a small cell, and n = 97 beside
    the site's row count (any complete column's n) would give it away, so n is withheld."""
    values = np.arange(100.0)
    values[:3] = np.nan
    part = describe.numeric_partial(values, 10)
    assert part == {"kind": "numeric", "n": "withheld", "missing": "<10"}
    assert describe.site_stats(part)["mean"] is None
    big = describe.numeric_partial(np.arange(50.0), 10)
    combined = describe.combine([part, big])
    assert combined["n"] == ">=50" and combined["missing"] == ">=0", "part's n is left out"
    complete = describe.numeric_partial(np.arange(100.0), 10)
    assert complete["n"] == 100 and complete["missing"] == 0, "no missing: nothing to hide"
    values[:12] = np.nan
    assert describe.numeric_partial(values, 10)["missing"] == 12


def test_a_small_missing_level_is_suppressed_with_the_levels_like_any_cell():
    levels = ["x"] * 40 + ["y"] * 30 + ["z"] * 12 + [None] * 2
    part = _travel(describe.categorical_partial(levels, 10))
    assert part["missing"] == "<10" and part["n"] == "withheld"
    assert part["counts"] == {"x": 40, "y": 30, "z": "<10"}, "z hidden so missing is not x+y+z"
    other = _travel(describe.categorical_partial(["x"] * 20 + ["z"] * 15, 10))
    combined = describe.combine([part, other])
    assert combined["counts"] == {"x": 60, "y": 30, "z": ">=16"}
    assert combined["n"] == ">=106" and combined["missing"] == ">=0"
    assert describe.site_stats(part) == {
        "n": "withheld",
        "missing": "<10",
        "counts": part["counts"],
    }


def test_a_categorical_site_with_too_few_values_makes_the_combined_counts_lower_bounds():
    """Site b holds 5 values: it releases n "<10" and no level counts, so the combined n and
    every combined level count are at least what the others released, never exact."""
    a = describe.categorical_partial(["F"] * 30 + ["M"] * 25, 10)
    b = describe.categorical_partial(["F"] * 3 + ["M"] * 2, 10)
    combined = describe.combine([a, b])
    assert combined["n"] == ">=56"
    assert combined["counts"] == {"F": ">=30", "M": ">=25"}
    assert "counts" not in describe.site_stats(b), "no level count released, none made up"
    assert describe.withheld_sites({"a": {"sex": a}, "b": {"sex": b}}, "sex") == ["b"]
