"""Issue 19 item 4: an approved task cannot make a site train or evaluate on a handful of
rows (one row's weight delta gives that patient's features back), whatever its test
fraction asks; the site's policy sets the minimum, never below 10."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from flip.config import SiteConfig, SitePolicy
from flip.data.features.tabular import TabularData
from flip.data.ledger import Ledger
from flip.fl.client import NotApproved, app
from flip.fl.preprocessing import feature_stats
from flip.fl.splits import EVALUATE_SPLIT, VALIDATION_FRACTION
from flip.fl.tasks import mace_task, task_hash
from flip.fl.tasks.base import TaskSpec, load_raw_splits
from tests.conftest import build_site
from tests.security.messages import node_context, task_message


@pytest.fixture(scope="module")
def site_yaml(tmp_path_factory) -> Path:
    """A site of 200 patients (its MACE task has about 200 rows)."""
    return build_site(tmp_path_factory.mktemp("rows"), "alpha", "csv", 200)


def _task(test_fraction: float) -> TaskSpec:
    return mace_task(scaling="fixed").model_copy(update={"test_fraction": test_fraction})


def _approved(site_yaml: Path, spec: TaskSpec, policy: SitePolicy | None = None) -> Path:
    """The site.yaml of the site with `policy`, once it approved `spec` for project p."""
    site = SiteConfig.load(site_yaml)
    Ledger(site.ledger).decide("p", task_hash(spec), "approved", by="admin")
    if policy is None:
        return site_yaml
    site.policy = policy
    path = site_yaml.with_name(f"site-{task_hash(spec)[:8]}.yaml")
    site.save(path)
    return path


def _log(site_yaml: Path, spec: TaskSpec, action: str) -> list[dict]:
    entries = Ledger(SiteConfig.load(site_yaml).ledger).entries()
    details = [json.loads(e["detail"]) for e in entries if e["action"] == action]
    return [d for d in details if d["task_hash"] == task_hash(spec)]


def _sizes(site_yaml: Path, spec: TaskSpec) -> tuple[int, int]:
    train, test = load_raw_splits(SiteConfig.load(site_yaml).store, spec)
    return len(train.y), len(test.y)


def test_a_task_asking_a_tiny_training_split_is_refused_before_it_trains(site_yaml):
    spec = _task(0.97)
    n_train, _ = _sizes(site_yaml, spec)
    assert 1 < n_train < 10
    path = _approved(site_yaml, spec)
    for kind in ("train", "evaluate"):
        with pytest.raises(
            NotApproved, match="training split has fewer than the site's minimum of 10 rows"
        ):
            app(task_message(kind, spec, run=1), node_context(path, run=1))
    assert _log(site_yaml, spec, "run.trained") == []
    assert len(_log(site_yaml, spec, "run.refused")) == 2


def test_a_task_asking_a_tiny_test_split_is_refused_before_it_evaluates(site_yaml):
    spec = _task(0.02)
    n_train, n_test = _sizes(site_yaml, spec)
    assert n_test < 10 <= n_train
    path = _approved(site_yaml, spec)
    with pytest.raises(NotApproved, match="test split has fewer than the site's minimum"):
        app(task_message("evaluate", spec, run=2), node_context(path, run=2))
    reason = _log(site_yaml, spec, "run.refused")[-1]["reason"]
    # The refusal reaches the hub (shared logs, the run's failure): it names no count below
    # the threshold, only the threshold.
    assert reason == "the test split has fewer than the site's minimum of 10 rows"
    assert str(n_test) not in reason.replace("10", "")


def test_the_minimum_is_the_policys_and_never_below_ten(site_yaml):
    # min_cell_size 1 still leaves the floor at 10: 6 training rows are refused.
    small = _task(0.97)
    path = _approved(site_yaml, small, SitePolicy(min_cell_size=1))
    with pytest.raises(NotApproved, match="fewer than the site's minimum of 10 rows"):
        app(task_message("train", small, run=3), node_context(path, run=3))
    with pytest.raises(ValidationError, match="min_rows"):
        SitePolicy(min_rows=5)
    # A site may ask more: min_rows, or by default its min_cell_size.
    spec = _task(0.25)
    n_train, n_test = _sizes(site_yaml, spec)
    for policy in (SitePolicy(min_rows=n_test + 1), SitePolicy(min_cell_size=n_test + 1)):
        path = _approved(site_yaml, spec, policy)
        with pytest.raises(NotApproved, match=f"test split has fewer than .* of {n_test + 1} "):
            app(task_message("evaluate", spec, run=4), node_context(path, run=4))
    # At the minimum, the site trains and evaluates.
    path = _approved(site_yaml, spec, SitePolicy(min_rows=n_test))
    trained = app(task_message("train", spec, run=5), node_context(path, run=5))
    assert set(trained.content) == {"arrays", "metrics"}
    # A round is evaluated on the validation split (a fifth of the training rows, fewer than
    # the test split here): refused; the final evaluation, of the test split, is not.
    with pytest.raises(NotApproved, match="validation split has fewer than the site's minimum"):
        app(task_message("evaluate", spec, run=5), node_context(path, run=5))
    final = task_message("evaluate", spec, run=5)
    final.content["config"][EVALUATE_SPLIT] = "test"
    evaluated = app(final, node_context(path, run=5))
    assert evaluated.content["site"]["n_train"] == n_train
    train, _ = load_raw_splits(SiteConfig.load(site_yaml).store, spec)
    fitted, _ = train.split(VALIDATION_FRACTION, spec.seed)
    trained_on = [t["n_train"] for t in _log(site_yaml, spec, "run.trained")]
    assert trained_on == [len(fitted.y)], "the training rows less the validation split"


def test_federated_scaling_stats_give_away_no_small_count_of_persons():
    """A feature's sum over the training rows is a count of persons when it is 0/1 (how many
    have the condition), and one person's value when one row has it."""
    n = 20
    age = np.linspace(40, 80, n)
    hba1c = np.full(n, np.nan)
    hba1c[:3] = [48.0, 53.0, 61.0]  # measured in 3 persons
    hiv = np.zeros(n)
    hiv[:2] = 1.0  # 2 persons
    male = np.ones(n)
    male[:2] = 0.0  # 2 women
    smoker = np.r_[np.ones(10), np.zeros(10)]
    x = np.column_stack([age, hba1c, hiv, male, smoker])
    train = TabularData(np.arange(n), x, np.zeros(n), ["age", "hba1c", "hiv", "male", "smoker"])

    shared = feature_stats(train, 5, threshold=10)

    assert shared["count"] == [20.0, 0.0, 0.0, 0.0, 20.0]
    assert shared["total"][1:4] == [0.0, 0.0, 0.0], "withheld: as if the site had none"
    assert shared["missing"] == [0.0, 20.0, 20.0, 20.0, 0.0]
    assert shared["total"][0] == pytest.approx(age.sum()) and shared["total"][4] == 10.0


def test_split_and_privacy_problems_name_no_count_of_rows():
    """The reasons a task cannot be split or run under DP reach the hub: none names a count
    of the site's rows (which may be below its threshold)."""
    from flip.data.features.shuffle_split import train_test_indices
    from flip.fl.privacy import PrivacySpec, delta_problem

    cases = [
        (3, 0.9, None, {3}),
        (7, 0.5, [0] * 6 + [1], {1, 6, 7}),
        (5, 0.2, [0, 0, 1, 1, 2], {1, 4, 5}),
    ]
    for n, fraction, y, counts in cases:
        with pytest.raises(ValueError) as raised:
            train_test_indices(n, fraction, 0, y)
        assert not counts & _integers(str(raised.value)), str(raised.value)
    reason = str(
        delta_problem(PrivacySpec(noise_multiplier=1.0, clipping_norm=1.0, delta=1e-3), 1007)
    )
    assert 1007 not in _integers(reason) and "delta" in reason


def _integers(text: str) -> set[int]:
    """The whole numbers `text` names (not the digits of a decimal)."""
    return {int(m) for m in re.findall(r"(?<![\d.])\d+(?![\d.])", text)}
