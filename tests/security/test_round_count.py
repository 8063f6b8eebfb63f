"""Issue 19 item 4: a server that resends `server-round=1` cannot make a site train more
rounds of a run than the approved task has; the site counts them in its own ledger."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flip.config import SiteConfig
from flip.data.ledger import Ledger
from flip.fl.client import NotApproved, app
from flip.fl.secure_aggregation import _TaskClient
from flip.fl.server import run_config
from flip.fl.tasks import mace_task, task_hash
from flip.fl.tasks.models import new_model
from tests.conftest import build_site
from tests.security.messages import node_context, task_message


@pytest.fixture(scope="module")
def site_yaml(tmp_path_factory) -> Path:
    """A site of 120 patients."""
    return build_site(tmp_path_factory.mktemp("rounds"), "alpha", "csv", 120)


def test_resending_round_one_trains_no_more_rounds_than_the_task_has(site_yaml):
    site = SiteConfig.load(site_yaml)
    spec = mace_task(scaling="fixed").model_copy(update={"rounds": 3})
    digest = task_hash(spec)
    Ledger(site.ledger).decide("p", digest, "approved", by="admin")

    for _ in range(3):
        reply = app(task_message("train", spec, run=41), node_context(site_yaml, run=41))
        assert "arrays" in reply.content
    with pytest.raises(NotApproved, match="run 41 has already trained the 3 rounds"):
        app(task_message("train", spec, run=41), node_context(site_yaml, run=41))

    entries = Ledger(site.ledger).entries()
    trained = [json.loads(e["detail"]) for e in entries if e["action"] == "run.trained"]
    assert [(t["round"], t["site_round"], t["flower_run"]) for t in trained] == [
        (1, 1, 41),
        (1, 2, 41),
        (1, 3, 41),
    ]
    assert entries[-1]["action"] == "run.refused"
    assert json.loads(entries[-1]["detail"]) == {
        "project": "p",
        "task_hash": digest,
        "reason": "run 41 has already trained the 3 rounds the task has",
    }
    # Another run of the approved task has its own rounds.
    reply = app(task_message("train", spec, run=42), node_context(site_yaml, run=42))
    assert "arrays" in reply.content


def test_a_site_under_secure_aggregation_counts_its_rounds_too(site_yaml):
    site = SiteConfig.load(site_yaml)
    spec = mace_task(scaling="fixed").model_copy(update={"rounds": 2, "secure_aggregation": True})
    Ledger(site.ledger).decide("p", task_hash(spec), "approved", by="admin")
    client = _TaskClient(node_context(site_yaml, run=43))
    weights = [v.detach().numpy() for v in new_model(spec).state_dict().values()]
    config = {**dict(run_config("p", spec)), "server-round": 1}
    for _ in range(2):
        assert client.fit(weights, config)[1] > 0
    with pytest.raises(NotApproved, match="run 43 has already trained the 2 rounds"):
        client.fit(weights, config)
