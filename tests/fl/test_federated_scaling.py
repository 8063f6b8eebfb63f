"""Federated scaling of store tasks: sites share sums and counts, every site scales alike."""

import json

import numpy as np
import pytest

from flip.config import SiteConfig
from flip.data.ledger import Ledger
from flip.fl.checkpoint import load as load_checkpoint
from flip.fl.client import NotApproved, share_stats
from flip.fl.preprocessing import feature_stats, scaling_of
from flip.fl.runtime.simulation import simulate
from flip.fl.server import run_config, task_server_app
from flip.fl.tasks import mace_task, task_hash
from flip.fl.tasks.base import load_raw_splits, scaling_over
from tests.conftest import build_site


@pytest.fixture(scope="module")
def two_sites(tmp_path_factory):
    """Two sites of different sizes and export formats, each with its own store."""
    root = tmp_path_factory.mktemp("sites")
    return [build_site(root, "alpha", "csv", 160), build_site(root, "beta", "fhir-ndjson", 90)]


def _raw_trains(paths, spec):
    return [load_raw_splits(SiteConfig.load(p).store, spec)[0] for p in paths]


def _ledger(path, action):
    entries = Ledger(SiteConfig.load(path).ledger).entries()
    return [json.loads(e["detail"]) for e in entries if e["action"] == action]


def test_the_federations_scaling_is_the_pooled_mean_and_deviation_of_training_rows(two_sites):
    spec = mace_task()
    names = [f.name for f in spec.data.features]
    trains = _raw_trains(two_sites, spec)
    shared = [feature_stats(train, len(names)) for train in trains]
    assert all(set(s) == {"count", "total", "squares", "missing"} for s in shared)
    assert all(len(values) == len(names) for s in shared for values in s.values())

    scaling = scaling_of(shared, names)

    pooled = np.vstack([train.x[:, : len(names)] for train in trains]).astype(np.float64)
    assert np.isnan(pooled).any(), "the synthetic sites should miss some measurements"
    assert np.allclose(scaling.center, np.nanmean(pooled, axis=0))
    assert np.allclose(scaling.scale, np.nanstd(pooled, axis=0))
    scaled = np.vstack([scaling.apply(train).x[:, : len(names)] for train in trains])
    assert np.all(scaled[np.isnan(pooled)] == 0.0), "a missing value becomes the mean"
    present = np.where(np.isnan(pooled), np.nan, scaled)
    assert np.allclose(np.nanmean(present, axis=0), 0.0, atol=1e-5)
    assert np.allclose(np.nanstd(present, axis=0), 1.0, atol=1e-4)
    alone = scaling_over(spec, trains[:1])
    assert not np.allclose(alone.center, scaling.center), "one site alone scales by its own rows"


def test_a_site_shares_its_sums_only_at_or_above_its_minimum_cell_size(two_sites):
    spec = mace_task()
    config = run_config("p", spec)
    site = SiteConfig.load(two_sites[1])
    stats = share_stats(site, spec, config)
    n_train = len(load_raw_splits(site.store, spec)[0].y)
    assert stats["count"][0] + stats["missing"][0] == n_train
    assert _ledger(two_sites[1], "run.stats")[-1] == {
        "project": "p",
        "task_hash": task_hash(spec),
        "n_train": n_train,
    }
    site.policy.min_cell_size = n_train + 1
    with pytest.raises(NotApproved, match="training split has fewer than"):
        share_stats(site, spec, config)
    assert "training split has fewer" in _ledger(two_sites[1], "run.refused")[-1]["reason"]


@pytest.mark.slow
def test_sites_train_on_the_federations_scaling_which_checkpoints_and_the_result_keep(
    two_sites, tmp_path
):
    spec = mace_task(seed=3)
    for path in two_sites:
        Ledger(SiteConfig.load(path).ledger).decide("p", task_hash(spec), "approved", by="x")
    checkpoint = tmp_path / "checkpoint.pt"
    app, result = task_server_app("p", spec, rounds=2, n_sites=2, checkpoint=checkpoint)
    simulate(app, two_sites)

    names = [f.name for f in spec.data.features]
    trains = _raw_trains(two_sites, spec)
    # Each site withholds a feature whose sums would count fewer than its 10 persons.
    expected = scaling_of([feature_stats(t, len(names), threshold=10) for t in trains], names)
    assert np.allclose(result.scaling.center, expected.center)
    assert np.allclose(result.scaling.scale, expected.scale)
    assert load_checkpoint(checkpoint).scaling == result.scaling
    assert all(m["auroc"] > 0.6 for m in result.per_site.values()) and len(result.per_site) == 2
    assert all(len(m["data_sha256"]) == 64 and m["n_train"] > 0 for m in result.per_site.values())
    asked = {p: len(_ledger(p, "run.stats")) for p in two_sites}

    again, resumed = task_server_app("p", spec, rounds=3, n_sites=2, checkpoint=checkpoint)
    simulate(again, two_sites)

    assert resumed.scaling == result.scaling, "a resumed run scales as it began"
    aurocs = [r["auroc"] for r in resumed.rounds]
    assert resumed.best_round == aurocs.index(max(aurocs)) + 1, "best kept across the resume"
    assert resumed.best_state_dict.keys() == resumed.state_dict.keys()
    assert {p: len(_ledger(p, "run.stats")) for p in two_sites} == asked, "and asks no one again"
    assert len(resumed.rounds) == 3


@pytest.mark.slow
def test_a_run_with_fixed_scaling_shares_no_statistics(two_sites):
    spec = mace_task(seed=4, scaling="fixed")
    for path in two_sites:
        Ledger(SiteConfig.load(path).ledger).decide("p", task_hash(spec), "approved", by="x")
    app, result = task_server_app("p", spec, rounds=1, n_sites=2)
    simulate(app, two_sites)
    assert result.scaling is None and len(result.per_site) == 2
    assert not [
        s for p in two_sites for s in _ledger(p, "run.stats") if s["task_hash"] == task_hash(spec)
    ]
