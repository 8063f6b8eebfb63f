"""Circe (ATLAS) cohorts at three synthetic sites, against a pandas reference written from
the Circe semantics; attrition monotone and suppressed; export of FLIP's JSON to Circe."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from pydantic import ValidationError
from sqlalchemy import select

from flip.data.cdm import schema
from flip.data.cdm.store import open_store
from flip.data.cohort import CohortDefinition, count_cohort
from flip.data.cohort.circe import CirceDefinition, load_definition
from flip.data.cohort.circe.attrition import attrition_counts, site_attrition
from flip.data.cohort.circe.export import to_circe
from flip.data.cohort.circe.supported import UnsupportedCirce
from flip.data.ingest import ingest_path
from tests.conftest import build_site

CIRCE = Path(__file__).parent / "circe"
FORMATS = ["fhir-bundle", "fhir-ndjson", "csv"]


@pytest.fixture(scope="module")
def sites(tmp_path_factory) -> dict[str, Path]:
    """Three synthetic sites, one per export format, each in its own DuckDB store."""
    root = tmp_path_factory.mktemp("circe-sites")
    return {
        fmt: build_site(root, f"site-{fmt}", fmt, 160, seed=3 + i).parent / "store.duckdb"
        for i, fmt in enumerate(FORMATS)
    }


def _circe(name: str) -> CirceDefinition:
    definition = load_definition((CIRCE / name).read_text(encoding="utf-8"), name=name)
    assert isinstance(definition, CirceDefinition)
    return definition


def _tables(store) -> dict[str, pd.DataFrame]:
    names = ["person", "observation_period", "condition_occurrence", "measurement"]
    names += ["observation", "visit_occurrence"]
    with store.connect() as conn:
        frames = {t: pd.read_sql(select(schema.metadata.tables[t]), conn) for t in names}
    for frame in frames.values():
        for col in frame.columns:
            if col.endswith("_date"):
                frame[col] = pd.to_datetime(frame[col]).dt.date
    return frames


def _first_in_observation(events: pd.DataFrame, date_col: str, op: pd.DataFrame) -> pd.Series:
    """Each person's earliest event date that lies inside one of their observation periods."""
    joined = events.merge(op, on="person_id")
    inside = joined[
        (joined[date_col] >= joined.observation_period_start_date)
        & (joined[date_col] <= joined.observation_period_end_date)
    ]
    return inside.groupby("person_id")[date_col].min()


def _age(t: dict[str, pd.DataFrame], index: pd.Series) -> pd.Series:
    born = t["person"].set_index("person_id").year_of_birth
    return pd.Series({p: d.year - born[p] for p, d in index.items()}, dtype=int)


def _reference_t2dm(t: dict[str, pd.DataFrame]) -> list[set[int]]:
    co = t["condition_occurrence"]
    index = _first_in_observation(
        co[co.condition_concept_id == 201826], "condition_start_date", t["observation_period"]
    )
    primary = set(index.index)
    older = {p for p, age in _age(t, index).items() if age >= 50}
    m = t["measurement"]
    sbp = m[(m.measurement_concept_id == 3004249) & (m.value_as_number >= 130)]
    near = {
        p
        for p in older
        if any(abs((d - index[p]).days) <= 365 for d in sbp[sbp.person_id == p].measurement_date)
    }
    return [primary, older, near]


def _reference_hypertension(t: dict[str, pd.DataFrame]) -> list[set[int]]:
    co = t["condition_occurrence"]
    index = _first_in_observation(
        co[co.condition_concept_id == 320128], "condition_start_date", t["observation_period"]
    )
    primary = set(index.index)
    diabetic = set(co[co.condition_concept_id == 201826].person_id)
    never = primary - diabetic
    men = set(t["person"][t["person"].gender_concept_id == 8507].person_id)
    return [primary, never, never & men]


def _reference_smokers(t: dict[str, pd.DataFrame]) -> list[set[int]]:
    op = t["observation_period"]
    index = _first_in_observation(t["visit_occurrence"], "visit_start_date", op)
    primary = set(index.index)
    obs = t["observation"].merge(op, on="person_id")
    obs = obs[
        (obs.observation_concept_id == 4298794)
        & (obs.observation_date >= obs.observation_period_start_date)
        & (obs.observation_date <= obs.observation_period_end_date)
    ]
    smokers = {p for p in primary if (obs[obs.person_id == p].observation_date == index[p]).any()}
    m = t["measurement"]
    high = set(m[(m.measurement_concept_id == 3004410) & (m.value_as_number > 6)].person_id)
    ages = _age(t, index)
    aged = {p for p in smokers & high if 40 <= ages[p] <= 75}
    return [primary, smokers, smokers & high, aged]


REFERENCES = {
    "t2dm_older_high_sbp.json": _reference_t2dm,
    "hypertension_men_not_diabetic.json": _reference_hypertension,
    "smokers_with_high_hba1c.json": _reference_smokers,
}


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_circe_cohorts_match_the_reference_at_three_sites(sites, name):
    definition = _circe(name)
    seen = []
    for path in sites.values():
        store = open_store(path, read_only=True)
        expected = [len(s) for s in REFERENCES[name](_tables(store))]
        counts = attrition_counts(store, definition)
        assert counts == expected
        assert count_cohort(store, definition) == expected[-1]
        store.close()
        seen.append(counts)
    assert any(c[-1] > 0 for c in seen) and any(c[0] > c[-1] for c in seen)


def test_attrition_is_monotone_and_suppressed(sites):
    definition = _circe("smokers_with_high_hba1c.json")
    for path in sites.values():
        store = open_store(path, read_only=True)
        counts = attrition_counts(store, definition)
        released = site_attrition(store, definition, min_cell=10)
        store.close()
        assert counts == sorted(counts, reverse=True)
        for count, shown in zip(counts, released, strict=True):
            assert shown == "<10" if 0 < count < 10 else shown in (count, "withheld")


def test_circe_runs_on_postgresql_as_on_duckdb_and_not_on_sqlite(store, exported):
    _, _, folder = exported("fhir-bundle", n=80)
    ingest_path(store, "fhir", folder)
    definition = _circe("t2dm_older_high_sbp.json")
    if store.engine.dialect.name == "sqlite":
        with pytest.raises(ValueError, match="DuckDB or PostgreSQL stores, not sqlite"):
            attrition_counts(store, definition)
        return
    expected = [len(s) for s in _reference_t2dm(_tables(store))]
    assert attrition_counts(store, definition) == expected


def test_flip_json_exports_to_circe_with_the_same_count(sites):
    store = open_store(sites["csv"], read_only=True)
    flip = CohortDefinition.model_validate(
        {
            "name": "women with diabetes and a high systolic, no MI",
            "include": [
                {"table": "condition_occurrence", "concept_ids": [201826]},
                {"table": "measurement", "concept_ids": [3004249], "value_min": 120},
            ],
            "exclude": [{"table": "condition_occurrence", "concept_ids": [4329847]}],
            "sex": ["female"],
        }
    )
    exported = load_definition(json.dumps(to_circe(flip)))
    assert count_cohort(store, exported) == count_cohort(store, flip) > 0
    store.close()


def test_what_circe_cannot_say_is_refused_by_name():
    with pytest.raises(UnsupportedCirce, match="age_min"):
        to_circe(CohortDefinition(name="x", age_min=40))
    note = CohortDefinition.model_validate(
        {"name": "x", "include": [{"table": "note", "concept_ids": [201826]}]}
    )
    with pytest.raises(UnsupportedCirce, match="note"):
        to_circe(note)


def test_unsupported_circe_elements_are_named():
    expression = json.loads((CIRCE / "t2dm_older_high_sbp.json").read_text(encoding="utf-8"))
    expression["PrimaryCriteria"]["CriteriaList"] = [{"DeviceExposure": {"CodesetId": 0}}]
    with pytest.raises(UnsupportedCirce, match="'DeviceExposure' is not supported"):
        load_definition(expression)
    expression["PrimaryCriteria"]["CriteriaList"] = [{"ConditionOccurrence": {"CodesetId": 0}}]
    expression["EndStrategy"] = {"CustomEra": {"DrugCodesetId": 0}}
    with pytest.raises(UnsupportedCirce, match="CustomEra"):
        load_definition(expression)
    with pytest.raises(ValidationError, match="CustomEra"):
        CirceDefinition(name="x", expression=expression)


@pytest.mark.parametrize(
    ("where", "criterion", "named"),
    [
        ("primary", {"ConditionOccurence": {"CodesetId": 0}}, "'ConditionOccurence' is not a"),
        ("primary", {"ConditionOccurrence": {"CodesetId": "zero"}}, "CodesetId 'zero'"),
        ("primary", {"ConditionOccurrence": {"CodesetId": 9}}, "CodesetId 9 names no"),
        ("rule", {"Observaton": {"CodesetId": 0}}, "'Observaton' is not a"),
        ("rule", {"Measurement": {}, "Observation": {}}, "is not one Circe criterion"),
        ("primary", {"ConditionOccurrence": {"CodesetId": 0, "Gender": "x"}}, r"\.Gender: "),
        ("primary", {"ConditionOccurrence": {"CodesetId": 0, "Age": "old"}}, r"\.Age: "),
        (
            "rule",
            {"Measurement": {"CodesetId": 0, "Age": {"Op": "gt", "Value": "old"}}},
            "Age.Value",
        ),
        ("rule", {"Measurement": {"CodesetId": 0, "Gendr": [{"CONCEPT_ID": 8507}]}}, "'Gendr'"),
        ("rule", {"Measurement": {"CodesetId": 0, "Age": {"Op": "over", "Value": 1}}}, "Op 'over'"),
    ],
)
def test_a_criterion_circe_would_read_as_any_record_is_refused_by_name(where, criterion, named):
    """OHDSI's parser turns a criterion it cannot read into "any record of its type": a typo
    counted every person with any condition."""
    expression = json.loads((CIRCE / "t2dm_older_high_sbp.json").read_text(encoding="utf-8"))
    if where == "primary":
        expression["PrimaryCriteria"]["CriteriaList"] = [criterion]
    else:
        rule = next(
            r["expression"] for r in expression["InclusionRules"] if r["expression"]["CriteriaList"]
        )
        rule["CriteriaList"][0]["Criteria"] = criterion
    with pytest.raises(UnsupportedCirce, match=named):
        load_definition(expression)


def test_flip_json_still_loads_as_flip():
    data = {"name": "d", "include": [{"table": "condition_occurrence", "concept_ids": [201826]}]}
    assert isinstance(load_definition(data), CohortDefinition)


def test_cli_attrition_per_site_and_combined(sites):
    from typer.testing import CliRunner

    from flip.cli.app import app

    cohort = CIRCE / "t2dm_older_high_sbp.json"
    args = [arg for fmt, path in sites.items() for arg in ("--store", f"{fmt}={path}")]
    result = CliRunner().invoke(app, ["analyse", "attrition", str(cohort), *args, "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    definition = _circe("t2dm_older_high_sbp.json")
    assert out["steps"] == ["primary criteria", *definition.rule_names()]
    for fmt, path in sites.items():
        store = open_store(path, read_only=True)
        assert out["sites"][fmt] == site_attrition(store, definition, 10)
        store.close()
    first = [out["sites"][fmt][0] for fmt in sites]
    assert all(isinstance(v, int) for v in first)
    assert out["combined"][0] == sum(first)


def test_cli_site_count_takes_circe_and_names_what_it_cannot_run(sites, tmp_path):
    from typer.testing import CliRunner

    from flip.cli.app import app

    store = str(sites["fhir-bundle"])
    cohort = CIRCE / "hypertension_men_not_diabetic.json"
    result = CliRunner().invoke(app, ["site", "count", str(cohort), "--store", store])
    assert result.exit_code == 0, result.output
    expression = json.loads(cohort.read_text(encoding="utf-8"))
    expression["CensoringCriteria"] = [{"Specimen": {}}]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(expression), encoding="utf-8")
    result = CliRunner().invoke(app, ["site", "count", str(bad), "--store", store])
    assert result.exit_code != 0
    assert "'Specimen' is not supported" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_cli_export_circe_prints_a_loadable_expression_or_one_line(tmp_path):
    from typer.testing import CliRunner

    from flip.cli.app import app

    flip = tmp_path / "flip.json"
    flip.write_text(
        json.dumps({"name": "d", "include": [{"table": "drug_exposure", "concept_ids": [1]}]}),
        encoding="utf-8",
    )
    result = CliRunner().invoke(app, ["site", "export-circe", str(flip)])
    assert result.exit_code == 0, result.output
    assert isinstance(load_definition(result.output), CirceDefinition)
    flip.write_text(json.dumps({"name": "d", "age_max": 60}), encoding="utf-8")
    result = CliRunner().invoke(app, ["site", "export-circe", str(flip)])
    assert result.exit_code != 0 and "age_min/age_max" in result.output


def test_attrition_goes_through_the_release_guard(sites, tmp_path):
    # The project was given a count of the first step's persons but three: the first step's
    # count beside it would count those three, so the guard withholds it.
    from sqlalchemy import create_engine

    from flip.data.cohort.circe.attrition import attrition_steps
    from flip.data.cohort.guard import ReleaseGuard

    definition = _circe("smokers_with_high_hba1c.json")
    store = open_store(next(iter(sites.values())), read_only=True)
    try:
        steps = attrition_steps(store, definition)
        assert len(steps[0]) >= 13
        engine = create_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
        before = ReleaseGuard(engine, "p1", "count", 10, None)
        before.remember([frozenset(sorted(steps[0])[3:])])
        released = site_attrition(store, definition, 10, ReleaseGuard(engine, "p1", "att", 10, 5))
        assert released[0] == "withheld"
        other_project = site_attrition(
            store, definition, 10, ReleaseGuard(engine, "p2", "a", 10, 5)
        )
        assert other_project[0] == len(steps[0])
    finally:
        store.close()


def test_a_circe_json_too_deep_or_too_long_is_refused_before_it_is_walked():
    expression = json.loads((CIRCE / "t2dm_older_high_sbp.json").read_text(encoding="utf-8"))
    group: dict = {"Type": "ALL", "CriteriaList": [], "Groups": []}
    expression["AdditionalCriteria"] = group
    for _ in range(40):
        group["Groups"] = [{"Type": "ALL", "CriteriaList": [], "Groups": []}]
        group = group["Groups"][0]
    with pytest.raises(UnsupportedCirce, match="nested deeper than 32 levels"):
        load_definition(expression)
    with pytest.raises(UnsupportedCirce, match="nests deeper than 32 levels"):
        load_definition('{"Groups": ' * 100_000 + "1" + "}" * 100_000)
    with pytest.raises(UnsupportedCirce, match="characters long, over 4,000,000"):
        load_definition(" " * 4_000_001)


def test_bad_occurrence_and_group_types_are_refused_by_name():
    expression = json.loads((CIRCE / "t2dm_older_high_sbp.json").read_text(encoding="utf-8"))
    rule = next(
        r["expression"] for r in expression["InclusionRules"] if r["expression"]["CriteriaList"]
    )
    rule["CriteriaList"][0]["Occurrence"] = {"Type": 7, "Count": 1}
    with pytest.raises(UnsupportedCirce, match=r"Occurrence\.Type is not 0, 1 or 2"):
        load_definition(expression)
    rule["CriteriaList"][0]["Occurrence"] = {"Type": 2, "Count": 1}
    rule["Type"] = "SOME"
    with pytest.raises(UnsupportedCirce, match="Type 'SOME' is not one of"):
        load_definition(expression)


def test_what_ohdsis_translator_raises_is_one_clean_error():
    from flip.data.cohort.circe.run import _statements

    expression = json.loads((CIRCE / "t2dm_older_high_sbp.json").read_text(encoding="utf-8"))
    criterion = expression["PrimaryCriteria"]["CriteriaList"][0]
    next(iter(criterion.values()))["Age"] = {"Op": "over", "Value": 1}
    with pytest.raises(UnsupportedCirce, match=r"^OHDSI's Circe cannot translate the expression: "):
        _statements(json.dumps(expression), "main", "duckdb")


def test_a_circe_count_releases_its_attrition_through_the_same_guard(sites, tmp_path):
    """What a site sends the hub for a Circe query: the count and each step's count, small
    ones hidden, rounded as the policy says, checked against each other and the project's
    earlier counts."""
    from sqlalchemy import create_engine

    from flip.data.cohort.circe.attrition import attrition_steps
    from flip.data.cohort.guard import ReleaseGuard
    from flip.data.cohort.release import release

    definition = _circe("smokers_with_high_hba1c.json")
    engine = create_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    store = open_store(sites["csv"], read_only=True)
    try:
        steps = attrition_steps(store, definition)
        released = release(store, definition, 10, ReleaseGuard(engine, "p", "q1", 10, None))
        expected = site_attrition(store, definition, 10)
        rounded = release(store, definition, 10, ReleaseGuard(engine, "p2", "q1", 10, None), 5)
    finally:
        store.close()
    assert released.attrition == expected
    assert len(released.attrition) == len(steps) == 1 + len(definition.rule_names())
    assert isinstance(released.attrition[0], int) and released.attrition[0] == len(steps[0])
    for shown, members in zip(released.attrition, steps, strict=True):
        assert shown == "<10" if 0 < len(members) < 10 else shown in (len(members), "withheld")
    assert all(v % 5 == 0 for v in rounded.attrition if isinstance(v, int))
    assert rounded.attrition[0] == (len(steps[0]) + 2) // 5 * 5  # halves up


def test_a_flip_count_has_no_attrition(sites):
    from flip.data.cohort.release import release

    store = open_store(sites["csv"], read_only=True)
    try:
        flip = CohortDefinition(name="everyone")
        assert release(store, flip, 10).attrition == []
    finally:
        store.close()
