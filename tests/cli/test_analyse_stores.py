"""`flip analyse stores`: an analysis on sites' stores in one process, as enrolled sites run
it, with a Circe (ATLAS) cohort as its rows or the task's entry events."""

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from flip.cli.app import app
from flip.data.cdm.store import open_store
from flip.data.cohort.circe.run import run_circe
from flip.data.features.tabular import extract_raw
from flip.fl.tasks import mace_task
from flip.stats import newton, regression
from flip.stats.model_cells import small_indicator_cell
from tests.conftest import build_site

CIRCE = Path(__file__).parents[1] / "data" / "circe"


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("analyse-stores")
    return {
        name: build_site(root, name, "fhir-bundle", n, seed).parent / "store.duckdb"
        for name, n, seed in (("a", 160, 2), ("b", 120, 3))
    }


def _run(stores: dict[str, Path], *args: str) -> dict:
    places = [f"--store={name}={path}" for name, path in stores.items()]
    done = CliRunner().invoke(app, ["analyse", "stores", *args, *places, "--json"])
    assert done.exit_code == 0, done.output
    return json.loads(done.stdout)


def test_a_table1_of_a_circe_cohort_reads_its_members_at_each_store(stores, tmp_path):
    expression = json.loads((CIRCE / "smokers_with_high_hba1c.json").read_text(encoding="utf-8"))
    expression["InclusionRules"] = expression["InclusionRules"][:1]  # smokers at a first visit
    atlas = tmp_path / "smokers.json"
    atlas.write_text(json.dumps(expression), encoding="utf-8")
    found = _run(stores, "table1", "--cohort", "mace-5y", "--circe", str(atlas))
    members = {}
    for name, path in stores.items():
        store = open_store(path, read_only=True)
        try:
            members[name] = len(run_circe(store, expression).members)
        finally:
            store.close()
    sites = found["result"]["sites"]
    assert {name: sites[name]["age"]["n"] for name in stores} == members
    assert found["result"]["combined"]["age"]["n"] == sum(members.values())
    everyone = _run(stores, "table1", "--cohort", "mace-5y")["result"]["combined"]["age"]["n"]
    assert everyone > sum(members.values()), "without --circe, everyone with an entry event"


def test_a_logistic_regression_takes_newton_rounds_as_the_hub_runs_them(stores):
    found = _run(stores, "regression", "--cohort", "mace-5y", "--covariates", "age,male")
    pooled = {}
    for name, path in stores.items():
        store = open_store(path, read_only=True)
        try:
            data = extract_raw(store, mace_task().data)
        finally:
            store.close()
        design = np.column_stack([np.ones(len(data.y)), data.x[:, :2], data.y])
        if small_indicator_cell(design, ["intercept", "age", "male", "outcome"], 10) is None:
            pooled[name] = (design[:, :3], data.y)
    assert pooled and sorted(found["result"]["withheld"]) == sorted(set(stores) - set(pooled))
    x = np.vstack([d[0] for d in pooled.values()])
    y = np.concatenate([d[1] for d in pooled.values()])
    reference = newton.fit([lambda b: regression.logistic_partial(x, y, b)], 3)
    coef = found["result"]["coef"]
    assert [coef["intercept"], coef["age"], coef["male"]] == pytest.approx(
        reference["beta"].tolist(), rel=1e-6
    )
