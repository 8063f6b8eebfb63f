"""Issue 19 item 4 held for the dermatology ClientApp too: a task whose test fraction leaves
a site a few training rows (`test_fraction: 0.99`) trained on them and sent back the update
and the exact row count. The site refuses a split under its fewest rows before training
(audited), and the count it sends is rounded as its other releases are."""

import numpy as np
import orjson
import pytest
from flwr.app import ConfigRecord

from flip.config import SiteConfig, SitePolicy
from flip.data.features.dermatology import FEATURES
from flip.data.features.text import TextSpec
from flip.data.ledger import Ledger
from flip.fl import dermatology_client
from flip.fl.client import NotApproved
from flip.fl.tasks.dermatology import new_model
from flip.fl.tasks.dermatology_data import SiteData
from flip.fl.tasks.dermatology_task import DermatologyTask
from flip.fl.tasks.dermatology_training import Split


def _task() -> DermatologyTask:
    return DermatologyTask(
        name="psoriasis",
        cohort="psoriasis, started a biologic",
        features=FEATURES,
        text=TextSpec(encoder="hashed", dims=16),
        rounds=2,
        local_epochs=1,
        test_fraction=0.99,
        image_size=16,
    )


def _split(n: int, task: DermatologyTask) -> Split:
    recipe = task.recipe("biomarker")
    rng = np.random.default_rng(0)
    return Split(
        rng.normal(size=(n, recipe.n_features)).astype(np.float32),
        rng.normal(size=(n, max(recipe.n_text, 1))).astype(np.float32),
        rng.random((n, 3, task.image_size, task.image_size)).astype(np.float32),
        rng.random(n).astype(np.float32) * 20,
    )


def _site(tmp_path, monkeypatch, n_train: int, policy: SitePolicy) -> tuple[SiteConfig, dict]:
    task = _task()
    site = SiteConfig(
        name="s", store=str(tmp_path / "none.duckdb"), ledger=str(tmp_path / "l.sqlite")
    )
    site.policy = policy
    data = SiteData(
        biomarker=(_split(n_train, task), _split(50, task)),
        response=(_split(n_train, task), _split(50, task)),
        test_fitzpatrick=np.zeros(50),
        members=n_train + 50,
        labelled=n_train + 50,
        photos=n_train + 50,
    )
    monkeypatch.setattr(dermatology_client, "rows", lambda site, task: data)
    Ledger(site.ledger).decide("derm", task.sha256(), "approved", by="admin")
    config = {
        "project": "derm",
        "task": task.model_dump_json(),
        "task-hash": task.sha256(),
        "model": "biomarker",
        "server-round": 1,
    }
    return site, config


def test_a_training_split_under_the_sites_fewest_rows_is_refused_before_training(
    tmp_path, monkeypatch
):
    site, config = _site(tmp_path, monkeypatch, n_train=3, policy=SitePolicy())
    with pytest.raises(NotApproved, match="fewer than the site's minimum"):
        dermatology_client.train_round(site, ConfigRecord(config), {}, run=1)
    refused = [e for e in Ledger(site.ledger).entries() if e["action"] == "run.refused"]
    assert orjson.loads(refused[-1]["detail"])["reason"].endswith("the site's minimum of 10 rows")


def test_the_row_count_a_round_sends_is_rounded_as_the_sites_releases(tmp_path, monkeypatch):
    site, config = _site(tmp_path, monkeypatch, n_train=12, policy=SitePolicy(round_counts_to=5))
    task = _task()
    recipe = task.recipe("biomarker")
    start = new_model(recipe.n_features, recipe.n_text, recipe.image, task.seed, None)
    state = start.state_dict()
    _, metrics = dermatology_client.train_round(site, ConfigRecord(config), state, run=1)
    assert metrics["num-examples"] == 10
