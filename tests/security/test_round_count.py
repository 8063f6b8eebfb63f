"""Issue 19 item 4: a server that resends `server-round=1` cannot make a site train more
rounds of a run than the approved task has; the site counts them in its own ledger."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

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


def nudged(spec, step: float) -> dict:
    """A fresh model's weights, each moved by `step`: a query the site has not answered."""
    return {k: v + step for k, v in new_model(spec).state_dict().items()}


def test_resending_round_one_trains_no_more_rounds_than_the_task_has(site_yaml):
    site = SiteConfig.load(site_yaml)
    spec = mace_task(scaling="fixed").model_copy(update={"rounds": 3})
    digest = task_hash(spec)
    Ledger(site.ledger).decide("p", digest, "approved", by="admin")

    for step in range(3):
        message = task_message("train", spec, run=41, arrays=nudged(spec, step / 100))
        reply = app(message, node_context(site_yaml, run=41))
        assert "arrays" in reply.content
    with pytest.raises(NotApproved, match="run 41 has already trained the 3 rounds"):
        message = task_message("train", spec, run=41, arrays=nudged(spec, 0.5))
        app(message, node_context(site_yaml, run=41))

    entries = Ledger(site.ledger).entries()
    trained = [json.loads(e["detail"]) for e in entries if e["action"] == "run.trained"]
    assert [(t["round"], t["site_round"], t["flower_run"]) for t in trained] == [
        (1, 1, 41),
        (1, 2, 41),
        (1, 3, 41),
    ]
    assert entries[-1]["action"] == "run.refused"
    assert json.loads(entries[-1]["detail"])["reason"].startswith(
        "run 41 has already trained the 3 rounds approved (a round sent again from other "
        "weights than the site trained it from is a new query, so it counts)"
    )
    # Another run of the approved task has its own rounds.
    reply = app(task_message("train", spec, run=42), node_context(site_yaml, run=42))
    assert "arrays" in reply.content


def test_a_site_under_secure_aggregation_counts_its_rounds_too(site_yaml):
    site = SiteConfig.load(site_yaml)
    spec = mace_task(scaling="fixed").model_copy(update={"rounds": 2, "secure_aggregation": True})
    Ledger(site.ledger).decide("p", task_hash(spec), "approved", by="admin")
    client = _TaskClient(node_context(site_yaml, run=43))
    config = {**dict(run_config("p", spec)), "server-round": 1}

    def weights(step: float) -> list:
        return [v.detach().numpy() for v in nudged(spec, step).values()]

    for step in range(2):
        assert client.fit(weights(step / 100), config)[1] > 0
    with pytest.raises(NotApproved, match="run 43 has already trained the 2 rounds"):
        client.fit(weights(0.5), config)


def test_a_hub_run_resubmitted_as_another_flower_run_trains_no_more_rounds(site_yaml):
    """Rounds were counted per Flower run, which carries no hub run: the same hub run sent
    again as a new Flower run trained its rounds again. The site agent's node now counts
    per hub run, up to the rounds the run had when the site joined it, and serves only
    hub runs the site joined."""
    site = SiteConfig.load(site_yaml)
    spec = mace_task(scaling="fixed").model_copy(update={"rounds": 5})
    digest = task_hash(spec)
    with Ledger(site.ledger) as ledger:
        ledger.decide("p", digest, "approved", by="admin")
        ledger.record("run.joined", {"run": 7, "project": "p", "task_hash": digest, "rounds": 2})

    def train(flower_run: int, hub_run: int):
        arrays = nudged(spec, flower_run / 100)  # each Flower run from other weights
        message = task_message("train", spec, run=flower_run, hub_run=hub_run, arrays=arrays)
        return app(message, node_context(site_yaml, run=flower_run, hub_runs=True))

    assert "arrays" in train(51, 7).content
    assert "arrays" in train(52, 7).content, "a resubmitted Flower run goes on counting"
    with pytest.raises(NotApproved, match="hub run 7 has already trained the 2 rounds approved"):
        train(53, 7)
    with pytest.raises(NotApproved, match=r"has not joined the hub run this names \(8\)"):
        train(54, 8)
    trained = [
        json.loads(e["detail"])
        for e in Ledger(site.ledger).entries()
        if e["action"] == "run.trained"
    ]
    assert [(t["run"], t["flower_run"], t["site_round"]) for t in trained[-2:]] == [
        (7, 51, 1),
        (7, 52, 2),
    ]


def test_a_round_resent_after_a_hub_crash_from_the_same_weights_is_answered_again_uncounted(
    site_yaml,
):
    """Issue 19 leftover: the hub crashed mid-round and its resumed run sent the round in
    flight again; the site trained it again and counted it twice, so the run's last round
    was refused. The same round from the same weights is now answered with the site's kept
    answer, byte for byte: no row read, no round counted, no epsilon spent. From other
    weights it is a new query and counts."""
    site = SiteConfig.load(site_yaml)
    spec = mace_task(scaling="fixed").model_copy(update={"rounds": 2, "seed": 5})
    digest = task_hash(spec)
    with Ledger(site.ledger) as ledger:
        ledger.decide("p", digest, "approved", by="admin")
        ledger.record("run.joined", {"run": 9, "project": "p", "task_hash": digest, "rounds": 2})

    def train(flower_run: int, server_round: int, arrays: dict):
        message = task_message(
            "train", spec, run=flower_run, hub_run=9, server_round=server_round, arrays=arrays
        )
        reply = app(message, node_context(site_yaml, run=flower_run, hub_runs=True))
        return reply.content["arrays"].to_torch_state_dict()

    start = nudged(spec, 0.0)
    first = train(61, 1, start)
    after_round_1 = {k: v + 0.01 for k, v in first.items()}
    in_flight = train(61, 2, after_round_1)  # the hub crashes before it aggregates round 2
    again = train(62, 2, after_round_1)  # the resumed hub run sends round 2 again
    assert all(torch.equal(in_flight[k], again[k]) for k in in_flight)

    entries = [(e["action"], json.loads(e["detail"])) for e in Ledger(site.ledger).entries()]
    of_run = [(a, d["round"]) for a, d in entries if d.get("run") == 9 and "round" in d]
    assert of_run == [("run.trained", 1), ("run.trained", 2), ("run.replayed", 2)]
    # The run's two rounds are still the two it trained: round 2 from other weights is new.
    with pytest.raises(NotApproved, match="hub run 9 has already trained the 2 rounds"):
        train(62, 2, {k: v + 0.5 for k, v in after_round_1.items()})
    # An edited kept answer is never sent: the ledger holds its digest.
    for kept in (Path(site.ledger).parent / "replay").iterdir():
        kept.write_bytes(kept.read_bytes()[:-1] + b"x")
    with pytest.raises(NotApproved, match="hub run 9 has already trained the 2 rounds"):
        train(63, 2, after_round_1)
