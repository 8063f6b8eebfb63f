"""Issue 20: the site's privacy budget and round counts hold against the attacks a review
found: counts edited outside the ledger, several tasks or cohort spellings over the same
persons, a large delta, evaluations spread over many Flower runs, and local-DP updates
that are not finite floating point.

The ClientApp gets Flower messages as a SuperNode hands them; store, ledger and policy are
real.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import duckdb
import pytest
from pydantic import ValidationError

from flip.config import SiteConfig, SitePolicy
from flip.data.ledger import Ledger, LedgerTampered
from flip.fl.client import NotApproved, budget_dataset
from flip.fl.privacy import PrivacySpec, delta_problem, gaussian_epsilon
from flip.fl.strategies import StrategySpec
from flip.fl.tasks import TaskSpec, mace_task, task_hash
from flip.fl.tasks.catalog import SYSTOLIC_BP
from flip.fl.tasks.sandbox import SandboxRefused
from flip.site.policy import task_problem
from tests.conftest import build_site
from tests.security.test_site_privacy import _approve, _ask, _site


@pytest.fixture(scope="module")
def store_yaml(tmp_path_factory) -> Path:
    """A site of 120 patients (its store is shared; each test gets its own ledger)."""
    return build_site(tmp_path_factory.mktemp("budget"), "alpha", "csv", 120)


def _dp_spec(**update) -> TaskSpec:
    privacy = PrivacySpec(noise_multiplier=1.0, clipping_norm=1.0)
    return mace_task(scaling="fixed").model_copy(update={"rounds": 3, "privacy": privacy, **update})


def _spent(site_yaml, spec) -> float:
    site = SiteConfig.load(site_yaml)
    return Ledger(site.ledger).spent()


def _edit(site_yaml, sql: str) -> None:
    """Change the ledger's file behind its back, as code with the file's path could."""
    with sqlite3.connect(SiteConfig.load(site_yaml).ledger) as db:
        db.execute(sql)


def test_a_charge_edited_behind_the_ledger_is_refused(store_yaml, tmp_path):
    spec = _dp_spec()
    site_yaml = _site(store_yaml, tmp_path, max_epsilon=100.0)
    ledger = _approve(site_yaml, spec)
    for number in (1, 2):
        _ask("train", spec, site_yaml, run=1, server_round=number)
    assert _spent(site_yaml, spec) == pytest.approx(gaussian_epsilon(1.0, 2, 1e-5))
    _edit(
        site_yaml,
        'update audit set detail = replace(detail, \'"epsilon":\', \'"epsilon":0.0,"x":\') '
        "where action = 'budget.charged'",
    )
    with pytest.raises(LedgerTampered):
        _spent(site_yaml, spec)
    with pytest.raises(NotApproved, match="chain is broken"):
        _ask("train", spec, site_yaml, run=1, server_round=3)
    assert ledger.entries()[-1]["action"] == "run.refused"


def test_a_round_count_removed_behind_the_ledger_is_refused(store_yaml, tmp_path):
    spec = mace_task(scaling="fixed").model_copy(update={"rounds": 2})
    site_yaml = _site(store_yaml, tmp_path)
    _approve(site_yaml, spec)
    for number in (1, 2):
        _ask("train", spec, site_yaml, run=2, server_round=number)
    _edit(site_yaml, "delete from audit where action = 'round.counted'")
    with pytest.raises(NotApproved, match="chain is broken"):
        _ask("train", spec, site_yaml, run=2, server_round=1)


def test_tasks_on_the_same_persons_in_one_run_add_up(store_yaml, tmp_path):
    tasks = [_dp_spec(learning_rate=0.2 - 0.01 * i) for i in range(5)]
    three = gaussian_epsilon(1.0, 3, 1e-5)
    site_yaml = _site(store_yaml, tmp_path, max_epsilon=2 * three * 1.01)
    for spec in tasks:
        _approve(site_yaml, spec)
    for spec in tasks[:2]:
        for number in (1, 2, 3):
            _ask("train", spec, site_yaml, run=40, server_round=number)
    assert _spent(site_yaml, tasks[0]) == pytest.approx(2 * three)
    with pytest.raises(NotApproved, match="above the site's ceiling"):
        _ask("train", tasks[2], site_yaml, run=40, server_round=1)


def test_every_spelling_of_a_cohort_draws_on_the_one_budget(store_yaml, tmp_path):
    a = _dp_spec()
    ids = list(a.data.entry_concept_ids)
    b = a.model_copy(update={"data": a.data.model_copy(update={"entry_concept_ids": ids + ids})})
    unused = [*reversed(ids), 987654321]
    c = a.model_copy(update={"data": a.data.model_copy(update={"entry_concept_ids": unused})})
    site_yaml = _site(store_yaml, tmp_path, max_epsilon=gaussian_epsilon(1.0, 3, 1e-5) * 1.01)
    site = SiteConfig.load(site_yaml)
    assert budget_dataset(site, a) == budget_dataset(site, b) == budget_dataset(site, c)
    assert budget_dataset(site, a).startswith("persons:")
    for spec in (a, b, c):
        _approve(site_yaml, spec)
    for number in (1, 2, 3):
        _ask("train", a, site_yaml, run=50, server_round=number)
    for spec in (b, c):
        with pytest.raises(NotApproved, match="above the site's ceiling"):
            _ask("train", spec, site_yaml, run=51, server_round=1)


def test_delta_is_bounded_by_the_spec_the_policy_and_the_rows(store_yaml, tmp_path):
    with pytest.raises(ValidationError, match="delta"):
        PrivacySpec(noise_multiplier=1.0, clipping_norm=1.0, delta=0.99)
    loose = PrivacySpec(noise_multiplier=1.0, clipping_norm=1.0, delta=1e-3)
    spec = mace_task(scaling="fixed").model_copy(update={"rounds": 3, "privacy": loose})
    assert "max_delta" in task_problem(SitePolicy(), "1", spec)
    assert task_problem(SitePolicy(max_delta=1e-3), "1", spec) is None
    assert "not below 1 / the site's training rows" in delta_problem(loose, 1000)
    assert delta_problem(loose, 999) is None
    site_yaml = _site(store_yaml, tmp_path)  # max_delta 1e-5 by default
    _approve(site_yaml, spec)
    with pytest.raises(NotApproved, match="above the site's max_delta"):
        _ask("train", spec, site_yaml, run=60)


def test_epsilon_is_charged_at_the_policys_delta(store_yaml, tmp_path):
    spec = _dp_spec()  # delta 1e-5
    site_yaml = _site(store_yaml, tmp_path, max_delta=1e-4)
    ledger = _approve(site_yaml, spec)
    _ask("train", spec, site_yaml, run=70)
    trained = [json.loads(e["detail"]) for e in ledger.entries() if e["action"] == "run.trained"]
    assert trained[-1]["delta"] == 1e-4
    assert trained[-1]["epsilon_run"] == pytest.approx(gaussian_epsilon(1.0, 1, 1e-4), rel=1e-5)


def test_a_site_that_changes_its_max_delta_still_answers(store_yaml, tmp_path):
    """Charges at different deltas add up by basic composition, (e1 + e2, d1 + d2): a site
    that lowers its max_delta after a DP charge goes on answering, charged at the new
    delta, and the ledger reports the deltas' sum beside the epsilons'."""
    spec = _dp_spec()
    site_yaml = _site(store_yaml, tmp_path, max_delta=1e-4)
    ledger = _approve(site_yaml, spec)
    _ask("train", spec, site_yaml, run=70)
    first = gaussian_epsilon(1.0, 1, 1e-4)
    _site(store_yaml, tmp_path, max_delta=1e-5)
    _ask("train", spec, site_yaml, run=72)
    trained = [json.loads(e["detail"]) for e in ledger.entries() if e["action"] == "run.trained"]
    assert trained[-1]["delta"] == 1e-5
    second = gaussian_epsilon(1.0, 1, 1e-5)
    assert trained[-1]["epsilon_total"] == pytest.approx(first + second, rel=1e-5)
    assert trained[-1]["delta_total"] == pytest.approx(1e-4 + 1e-5)
    assert ledger.spent() == pytest.approx(first + second, rel=1e-5)


def test_evaluations_of_a_task_are_capped_across_flower_runs(store_yaml, tmp_path):
    spec = _dp_spec(rounds=1)
    site_yaml = _site(store_yaml, tmp_path, max_evaluations=3)
    _approve(site_yaml, spec)
    for run in (80, 81, 82):  # each a fresh Flower run, each under its own per-run limit
        _ask("evaluate", spec, site_yaml, run=run)
    with pytest.raises(NotApproved, match="the 3 evaluations the site's policy allows"):
        _ask("evaluate", spec, site_yaml, run=83)


def test_under_dp_no_exact_training_metric_leaves(store_yaml, tmp_path):
    privacy = PrivacySpec(clipping="client", noise_multiplier=1.0, clipping_norm=1.0)
    spec = mace_task(scaling="fixed").model_copy(update={"rounds": 3, "privacy": privacy})
    site_yaml = _site(store_yaml, tmp_path)
    _approve(site_yaml, spec)
    reply = _ask("train", spec, site_yaml, run=90)
    assert dict(reply.content["metrics"]) == {"num-examples": 1.0}
    plain = mace_task(scaling="fixed").model_copy(update={"rounds": 3})
    _approve(site_yaml, plain)
    assert "loss" in _ask("train", plain, site_yaml, run=91).content["metrics"]


def test_qfedavg_is_refused_under_dp(store_yaml, tmp_path):
    privacy = PrivacySpec(clipping="client", noise_multiplier=1.0, clipping_norm=1.0)
    spec = mace_task(scaling="fixed").model_copy(
        update={"rounds": 3, "privacy": privacy, "strategy": StrategySpec(name="qfedavg")}
    )
    site_yaml = _site(store_yaml, tmp_path)
    _approve(site_yaml, spec)
    with pytest.raises(NotApproved, match="exact training loss"):
        _ask("train", spec, site_yaml, run=95, strategy="qfedavg")


NAN = """
import torch
def new_model(n_features, seed):
    torch.manual_seed(seed)
    return torch.nn.Linear(n_features, 1)

def train(model, x, y, config, device):
    with torch.no_grad():
        model.weight.fill_(float("nan"))
    return {"loss": 0.0}
"""


def test_under_local_dp_an_update_that_is_not_finite_is_refused(store_yaml, tmp_path):
    privacy = PrivacySpec(clipping="client", noise_multiplier=1000.0, clipping_norm=1e-6)
    base = mace_task(scaling="fixed").model_dump()
    spec = TaskSpec.model_validate(
        {**base, "kind": "custom", "code": NAN, "rounds": 3, "privacy": privacy.model_dump()}
    )
    site_yaml = _site(store_yaml, tmp_path, allowed_task_kinds=["custom"])
    ledger = _approve(site_yaml, spec)
    # The sandbox refuses a custom task's non-finite weights first; local DP refuses any
    # other non-finite update (tests/fl/test_privacy_accounting.py): nothing is sent.
    with pytest.raises((NotApproved, SandboxRefused), match="NaN"):
        _ask("train", spec, site_yaml, run=100)
    assert "run.trained" not in [e["action"] for e in ledger.entries()]


def test_the_budget_is_the_persons_whichever_project_asks(store_yaml, tmp_path):
    """The budget was kept per project: a researcher who opened a second project over the
    same persons got the whole `max_epsilon` again (three projects spent 3x the ceiling).
    The persons are the same whichever project asks, so their budget is one."""
    spec = _dp_spec()
    three = gaussian_epsilon(1.0, 3, 1e-5)
    site_yaml = _site(store_yaml, tmp_path, max_epsilon=three * 1.01)
    ledger = _approve(site_yaml, spec)
    ledger.decide("q", task_hash(spec), "approved", by="admin")
    for number in (1, 2, 3):
        _ask("train", spec, site_yaml, run=60, server_round=number)
    with pytest.raises(NotApproved, match="above the site's ceiling"):
        _ask("train", spec, site_yaml, run=61, server_round=1, project="q")
    assert _spent(site_yaml, spec) == pytest.approx(three)


def test_a_cohort_one_person_smaller_draws_on_the_same_budget(store_yaml, tmp_path):
    """The budget was kept per person set: a store (or cohort) that lost one person was a
    new dataset with the whole `max_epsilon` again, though it holds everyone else whose
    privacy was spent. The site keeps one budget, whatever persons a task selects."""
    spec = _dp_spec()
    three = gaussian_epsilon(1.0, 3, 1e-5)
    site_yaml = _site(store_yaml, tmp_path, max_epsilon=three * 1.01)
    _approve(site_yaml, spec)
    site = SiteConfig.load(site_yaml)
    copy = tmp_path / "one-fewer.duckdb"
    shutil.copy(site.store, copy)
    with duckdb.connect(str(copy)) as db:
        db.execute(
            "delete from measurement where person_id = (select min(person_id) from measurement "
            f"where measurement_concept_id = {SYSTOLIC_BP})"
        )
    smaller = site.model_copy(update={"store": str(copy)})
    smaller_yaml = tmp_path / "smaller" / "site.yaml"
    smaller_yaml.parent.mkdir()
    smaller.save(smaller_yaml)
    assert budget_dataset(smaller, spec) != budget_dataset(site, spec)  # one person fewer
    for number in (1, 2, 3):
        _ask("train", spec, site_yaml, run=110, server_round=number)
    with pytest.raises(NotApproved, match="above the site's ceiling"):
        _ask("train", spec, smaller_yaml, run=111, server_round=1)
    assert Ledger(site.ledger).spent() == pytest.approx(three)
