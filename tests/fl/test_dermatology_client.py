"""The dermatology ClientApp checks the task against its site's ledger before it reads a row."""

import pytest
from flwr.app import ConfigRecord

from flip.config import SiteConfig
from flip.data.features.adapter import Weights
from flip.data.features.dermatology import FEATURES
from flip.data.features.text import TextSpec
from flip.data.ledger import Ledger
from flip.fl.client import NotApproved
from flip.fl.dermatology_client import authorise, count_round, train_round
from flip.fl.tasks.dermatology_task import DermatologyTask


def _task(rounds: int = 2) -> DermatologyTask:
    return DermatologyTask(
        name="psoriasis",
        cohort="psoriasis, started a biologic",
        features=FEATURES,
        text=TextSpec(encoder="hashed", dims=16),
        rounds=rounds,
        local_epochs=1,
    )


def _config(task: DermatologyTask, digest: str | None = None) -> ConfigRecord:
    return ConfigRecord(
        {
            "project": "derm",
            "task": task.model_dump_json(),
            "task-hash": digest or task.sha256(),
            "model": "biomarker",
            "server-round": 1,
        }
    )


def _refusals(site: SiteConfig) -> list[dict]:
    return [e for e in Ledger(site.ledger).entries() if e["action"] == "run.refused"]


def test_authorise_refuses_unapproved_and_tampered_tasks_and_audits_it(tmp_path):
    site = SiteConfig(name="s", store=str(tmp_path / "none.duckdb"), ledger=str(tmp_path / "l"))
    task = _task()
    with pytest.raises(NotApproved, match="s: the site has not approved"):
        authorise(site, _config(task))
    Ledger(site.ledger).decide("derm", task.sha256(), "approved", by="admin")
    assert authorise(site, _config(task)) == task
    with pytest.raises(NotApproved, match="does not hash"):
        authorise(site, _config(_task(rounds=3), digest=task.sha256()))
    assert len(_refusals(site)) == 2


def test_an_unapproved_site_reads_no_row_when_asked_to_train(tmp_path):
    store = tmp_path / "store-that-does-not-exist.duckdb"
    site = SiteConfig(name="s", store=str(store), ledger=str(tmp_path / "ledger.sqlite"))
    with pytest.raises(NotApproved, match="not approved"):
        train_round(site, _config(_task()), {}, run=1)
    assert not store.exists()
    assert _refusals(site)


def test_a_run_trains_no_more_rounds_than_approved_whatever_round_the_server_names(tmp_path):
    store = tmp_path / "store-that-does-not-exist.duckdb"
    site = SiteConfig(name="s", store=str(store), ledger=str(tmp_path / "ledger.sqlite"))
    task = _task(rounds=2)
    Ledger(site.ledger).decide("derm", task.sha256(), "approved", by="admin")
    count_round(site, task, _config(task), run=7, kind="train")
    count_round(site, task, _config(task), run=7, kind="train")
    with pytest.raises(NotApproved, match="already trained the 2 rounds"):
        train_round(site, _config(task), {}, run=7)
    assert not store.exists()
    count_round(site, task, _config(task), run=8, kind="train")
    for _ in range(3):
        count_round(site, task, _config(task), run=7, kind="evaluate")
    with pytest.raises(NotApproved, match="already evaluated"):
        count_round(site, task, _config(task), run=7, kind="evaluate")


def test_a_site_without_the_photograph_weights_the_task_names_refuses_before_reading(tmp_path):
    store = tmp_path / "store-that-does-not-exist.duckdb"
    site = SiteConfig(name="s", store=str(store), ledger=str(tmp_path / "ledger.sqlite"))
    task = _task().model_copy(update={"image_weights": Weights(name="skin", sha256="a" * 64)})
    Ledger(site.ledger).decide("derm", task.sha256(), "approved", by="admin")
    with pytest.raises(NotApproved, match="no model 'skin' is registered"):
        train_round(site, _config(task), {}, run=1)
    assert not store.exists()
    assert _refusals(site)
