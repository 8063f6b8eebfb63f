"""Issue 19: the training and test sizes a site reports with its evaluation (to the hub, the run
and its certificate) are counts of persons, released like any count: suppressed, rounded and
withheld by the differencing guard. They went out exact, outside the guard: a project given
the count of a cohort and a task whose training set was that cohort and three more persons
learnt those three."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flip.config import SiteConfig, SitePolicy
from flip.data.cohort.guard import ReleaseGuard
from flip.data.ledger import Ledger
from flip.fl.client import app, usable_splits
from flip.fl.server import run_config
from flip.fl.tasks import mace_task, task_hash
from tests.conftest import build_site
from tests.security.messages import node_context, task_message


@pytest.fixture(scope="module")
def site_yaml(tmp_path_factory) -> Path:
    """A site of 120 patients."""
    return build_site(tmp_path_factory.mktemp("sizes"), "alpha", "csv", 120)


def _evaluate(site_yaml: Path, spec, project: str) -> dict:
    """What the site's evaluation reply tells the server about the site."""
    reply = app(
        task_message("evaluate", spec, run=61, project=project), node_context(site_yaml, run=61)
    )
    return dict(reply.content["site"])


def _with_policy(site_yaml: Path, policy: SitePolicy) -> None:
    site = SiteConfig.load(site_yaml)
    site.policy = policy
    site.save(site_yaml)


def test_a_training_size_that_differences_an_earlier_count_is_withheld(site_yaml):
    _with_policy(site_yaml, SitePolicy(min_cell_size=10))
    site = SiteConfig.load(site_yaml)
    spec = mace_task(scaling="fixed")
    digest = task_hash(spec)
    Ledger(site.ledger).decide("p1", digest, "approved", by="admin")
    train, test = usable_splits(site, spec, run_config("p1", spec))
    earlier = frozenset(train.person_ids.tolist()[3:])  # a count the project was given
    with Ledger(site.ledger) as ledger:
        guard = ReleaseGuard(ledger.engine, "p1", "q1", 10, None)
        guard.remember([earlier])

    about = _evaluate(site_yaml, spec, "p1")
    assert "n_train" not in about, "three persons would be its difference from the count"
    assert about["n_test"] == len(test.y)
    with Ledger(site.ledger) as ledger:
        evaluated = json.loads(
            [e for e in ledger.entries() if e["action"] == "run.evaluated"][-1]["detail"]
        )
    assert evaluated["n_train"] is None and evaluated["rows"]["train"] == len(train.y)
    assert _evaluate(site_yaml, spec, "p1").keys() == about.keys(), "and again next time"


def test_split_sizes_are_rounded_as_the_site_rounds_counts(site_yaml):
    _with_policy(site_yaml, SitePolicy(min_cell_size=10, round_counts_to=20))
    site = SiteConfig.load(site_yaml)
    spec = mace_task(scaling="fixed")
    Ledger(site.ledger).decide("p2", task_hash(spec), "approved", by="admin")
    train, test = usable_splits(site, spec, run_config("p2", spec))
    about = _evaluate(site_yaml, spec, "p2")
    assert about["n_train"] % 20 == 0 and abs(about["n_train"] - len(train.y)) <= 10
    assert about["n_test"] % 20 == 0 and abs(about["n_test"] - len(test.y)) <= 10
    assert (about["n_train"], about["n_test"]) != (len(train.y), len(test.y))


def test_sizes_whose_sum_differences_an_earlier_count_are_all_withheld(site_yaml):
    """Training and test sizes add up to the task's cohort: a project given the count of
    that cohort less three persons would learn the three from the sum."""
    _with_policy(site_yaml, SitePolicy(min_cell_size=10))
    site = SiteConfig.load(site_yaml)
    spec = mace_task(scaling="fixed")
    Ledger(site.ledger).decide("p3", task_hash(spec), "approved", by="admin")
    train, test = usable_splits(site, spec, run_config("p3", spec))
    cohort = sorted(train.person_ids.tolist() + test.person_ids.tolist())
    with Ledger(site.ledger) as ledger:
        ReleaseGuard(ledger.engine, "p3", "q1", 10, None).remember([frozenset(cohort[3:])])
    about = _evaluate(site_yaml, spec, "p3")
    assert "n_train" not in about and "n_test" not in about
