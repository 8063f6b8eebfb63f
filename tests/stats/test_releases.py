"""A release's shape is checked per site before combining: each fault named, none missed."""

import numpy as np
import pytest

from flip.stats import describe, regression, survival
from flip.stats.releases import problems

AGE = {"columns": {"age": describe.numeric_partial(np.arange(30.0), 10)}}
LOGISTIC = {"kind": "regression", "family": "logistic", "covariates": ["x"]}


def _newton(size: int) -> dict:
    x = np.column_stack([np.ones(30)] + [np.arange(30.0)] * (size - 1))
    return regression.logistic_partial(x, (np.arange(30) % 2).astype(float), [0.0] * size)


@pytest.mark.parametrize(
    ("spec", "round_", "release", "reason"),
    [
        ({"kind": "table1"}, 0, [], "the release: not an object"),
        ({"kind": "table1"}, 0, {"columns": {}}, "columns: none released"),
        (
            {"kind": "table1"},
            0,
            {"columns": {"age": {"kind": "numeric", "n": 30, "missing": 0, "sum": None}}},
            "column 'age' sum: not a number",
        ),
        (
            {"kind": "table1"},
            0,
            {
                "columns": {
                    "sex": {"kind": "categorical", "n": 30, "missing": 0, "counts": {"F": -1}}
                }
            },
            "column 'sex' level 'F': negative",
        ),
        (
            {"kind": "table1"},
            0,
            {"columns": {"age": AGE["columns"]["age"] | {"sketch": {"alpha": 0.005}}}},
            "column 'age' sketch: KeyError 'runs'",
        ),
        (LOGISTIC, 0, {"withheld": False, "left_out": 0, "n": 30}, "the release has no 'newton'"),
        (LOGISTIC, 2, {"newton": _newton(3)}, "newton.gradient: not a list of 2"),
        (
            {"kind": "survival"},
            0,
            {"km": {"bins": [[30.0, 2]]}, "cox": None, "left_out": 0},
            "km.bins row: not a list of 3",
        ),
        (
            {"kind": "harmonisation"},
            0,
            {"concepts": {"x": {}}, "tables": {}},
            "concept x: not a concept id",
        ),
    ],
)
def test_each_fault_is_named(spec, round_, release, reason):
    assert problems(spec, round_, {"good": None, "bad": release} | {"good": _ok(spec, round_)}) == {
        "bad": reason
    }


def _ok(spec: dict, round_: int) -> dict:
    if spec["kind"] == "table1":
        return AGE
    if spec["kind"] == "regression":
        partial = _newton(2)
        return (
            {"newton": partial}
            if round_
            else {"withheld": False, "left_out": 0, "n": 30, "newton": partial}
        )
    if spec["kind"] == "survival":
        km = survival.km_partial(np.arange(1.0, 41.0), np.ones(40), 30.0, 10)
        return {"km": km, "cox": None, "counts": None, "left_out": "<10"}
    concept = {"name": "x", "table": "measurement", "rows": 12, "sources": {"LOINC|1": 12}}
    return {"concepts": {"3": concept}, "tables": {"measurement": {"unmapped": {"a": "<10"}}}}


def test_a_site_whose_columns_differ_from_most_is_named_and_a_tie_names_all():
    odd = {"columns": {"weight": AGE["columns"]["age"]}}
    found = problems({"kind": "table1"}, 0, {"a": AGE, "b": AGE, "c": odd})
    assert list(found) == ["c"] and "age (numeric)" in found["c"]
    assert sorted(problems({"kind": "table1"}, 0, {"a": AGE, "c": odd})) == ["a", "c"]


def test_a_well_formed_site_that_cannot_be_fitted_alone_is_not_malformed():
    constant = regression.logistic_partial(np.ones((30, 2)), np.zeros(30), [0.0, 0.0])
    release = {"withheld": False, "left_out": 0, "n": 30, "newton": constant}
    assert problems(LOGISTIC, 0, {"a": release}) == {}


@pytest.mark.parametrize(
    "column",
    [
        {"kind": "categorical", "n": "withheld", "missing": "<10", "counts": 5},
        {"kind": "categorical", "n": "withheld", "missing": "<10", "counts": {"F": None}},
        {**AGE["columns"]["age"], "n": 1, "m2": -1e12},
    ],
)
def test_what_passes_the_check_combines_with_a_well_formed_site(column):
    from flip.stats.federated import combine_round

    sex = describe.categorical_partial(["F"] * 20 + ["M"] * 20, 10)
    good = {"columns": {"age": AGE["columns"]["age"], "sex": sex}}
    name = "sex" if column["kind"] == "categorical" else "age"
    hostile = {"columns": {**good["columns"], name: column}}
    releases = {"good": good, "hostile": hostile}
    if not problems({"kind": "table1"}, 0, releases):
        combine_round({"kind": "table1"}, {"round": 0}, releases)


@pytest.mark.parametrize("cid", ["²", "1²", "9" * 5000])
def test_a_concept_id_int_cannot_read_is_named_not_a_failed_combine(cid):
    from flip.stats.federated import combine_round

    good = {"concepts": {"201826": {"rows": 40, "sources": {"E11": 40}}}, "tables": {}}
    hostile = {"concepts": {cid: {"rows": 40, "sources": {}}}, "tables": {}}
    releases = {"good": good, "hostile": hostile}
    if not problems({"kind": "harmonisation"}, 0, releases):
        combine_round({"kind": "harmonisation"}, {"round": 0}, releases)


@pytest.mark.parametrize(
    "rows",
    [[[1.0, -5, 0]], [[1.0, 2.5, 0]], [[-1.0, 10, 5]], [[2.0, 5, 5], [1.0, 5, 5]]],
)
def test_a_curve_no_site_could_release_is_named(rows):
    release = {"km": {"bins": rows}, "cox": None, "left_out": 0}
    assert "km.bins" in problems({"kind": "survival"}, 0, {"hostile": release})["hostile"]


def test_a_site_curve_as_released_is_well_formed():
    rng = np.random.default_rng(0)
    time, event = rng.exponential(5, 60), (rng.random(60) < 0.7).astype(int)
    for t in (time, np.zeros(60)):
        km = survival.km_partial(t, event, 1.0, 3)
        assert (
            problems({"kind": "survival"}, 0, {"a": {"km": km, "cox": None, "left_out": 0}}) == {}
        )
