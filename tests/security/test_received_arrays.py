"""A hostile server's weights that cannot be the approved task's model (another number of
arrays, an array of another size, weights that are not finite floats) are refused with one
audited line before the site counts the round, spends epsilon or reads a row; before, they
raised from inside training after the round was counted and its epsilon charged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from flip.config import SiteConfig
from flip.data.ledger import Ledger
from flip.fl.client import NotApproved, app
from flip.fl.tasks import mace_task, task_hash
from flip.fl.tasks.models import new_model
from tests.conftest import build_site
from tests.security.messages import node_context, task_message

LOCAL_DP = {"level": "site", "noise_multiplier": 1.0, "clipping_norm": 1.0, "clipping": "client"}


@pytest.fixture(scope="module")
def site_yaml(tmp_path_factory) -> Path:
    return build_site(tmp_path_factory.mktemp("received"), "alpha", "csv", 160)


def _malformed(good: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    first = next(iter(good))
    return {
        "wrong size": {**good, first: torch.zeros(3, 3)},
        "one more array": {**good, "extra": torch.zeros(2)},
        "one array short": {k: v for k, v in good.items() if k != first},
        "not finite": {k: torch.full_like(v, float("nan")) for k, v in good.items()},
        "integers": {k: v.long() for k, v in good.items()},
    }


@pytest.mark.parametrize("kind", ["train", "evaluate"])
def test_weights_that_are_not_the_tasks_model_are_refused_before_anything_is_counted(
    site_yaml, kind
):
    site = SiteConfig.load(site_yaml)
    spec = mace_task(scaling="fixed").model_copy(
        update={"rounds": 3, "privacy": LOCAL_DP, "name": f"received-{kind}"}
    )
    spec = type(spec).model_validate(spec.model_dump())
    digest = task_hash(spec)
    Ledger(site.ledger).decide("p", digest, "approved", by="admin")
    cases = _malformed(new_model(spec).state_dict())
    with Ledger(site.ledger) as ledger:
        spent = ledger.spent()
    for number, (case, arrays) in enumerate(cases.items(), start=1):
        message = task_message(kind, spec, run=300 + number, arrays=arrays)
        with pytest.raises(NotApproved, match="server") as refused:
            app(message, node_context(site_yaml, run=300 + number))
        assert "\n" not in str(refused.value), case
    with Ledger(site.ledger) as ledger:
        assert ledger.rounds_counted("p", digest, "train") == 0
        assert ledger.rounds_counted("p", digest, "evaluate") == 0
        assert ledger.spent() == spent, "no epsilon charged"
        refusals = [d for _, d in ledger.chained(frozenset({"run.refused"}))]
    assert sum(d["task_hash"] == digest for d in refusals) == len(cases), "each one audited"
    reply = app(task_message(kind, spec, run=399), node_context(site_yaml, run=399))
    assert "metrics" in reply.content, "the task's own weights are still answered"


def test_a_federated_scaling_that_is_not_one_for_the_tasks_features_is_an_audited_refusal(
    site_yaml,
):
    """The server sends the federation's scaling with each message; one with a negative or
    infinite scale, a centre that is not a number, or another number of features than the
    task has (or none) is refused with one audited line, nothing counted, rather than
    raising unrecorded or scaling some features and not others."""
    site = SiteConfig.load(site_yaml)
    spec = mace_task().model_copy(update={"rounds": 3, "name": "scaled-by-the-server"})
    digest = task_hash(spec)
    Ledger(site.ledger).decide("p", digest, "approved", by="admin")
    n = len(spec.data.features)
    good = {"center": [0.0] * n, "scale": [1.0] * n}
    bad = [
        {**good, "scale": [-1.0] * n},
        {**good, "scale": [float("inf")] * n},
        {**good, "center": [float("nan")] * n},
        {"center": [0.0], "scale": [1.0]},
        None,
    ]
    for number, scaling in enumerate(bad, start=1):
        message = task_message("train", spec, run=500 + number)
        if scaling is not None:
            message.content["config"]["scaling"] = json.dumps(scaling)
        with pytest.raises(NotApproved, match="scaling") as refused:
            app(message, node_context(site_yaml, run=500 + number))
        assert "\n" not in str(refused.value)
    with Ledger(site.ledger) as ledger:
        assert ledger.rounds_counted("p", digest, "train") == 0
        refusals = [d for _, d in ledger.chained(frozenset({"run.refused"}))]
    assert sum(d["task_hash"] == digest for d in refusals) == len(bad), "each one audited"
    message = task_message("train", spec, run=599)
    message.content["config"]["scaling"] = json.dumps(good)
    assert "arrays" in app(message, node_context(site_yaml, run=599)).content


@pytest.mark.parametrize(
    ("case", "change"),
    [
        ("no task", lambda c: c.__delitem__("task")),
        ("a task that is not JSON", lambda c: c.__setitem__("task", "{nope")),
        ("a task that is not a spec", lambda c: c.__setitem__("task", '{"name": "x"}')),
        ("no project", lambda c: c.__delitem__("project")),
        ("no hash", lambda c: c.__delitem__("task-hash")),
        ("a hub run that is not a number", lambda c: c.__setitem__("hub-run", "abc")),
    ],
)
def test_a_message_that_names_no_valid_task_is_an_audited_one_line_refusal(site_yaml, case, change):
    site = SiteConfig.load(site_yaml)
    spec = mace_task(scaling="fixed")
    Ledger(site.ledger).decide("p", task_hash(spec), "approved", by="admin")
    message = task_message("train", spec, run=700, hub_run=1)
    change(message.content["config"])
    with Ledger(site.ledger) as ledger:
        before = len(ledger.chained(frozenset({"run.refused"})))
    with pytest.raises(NotApproved, match="names no valid task") as refused:
        app(message, node_context(site_yaml, run=700, hub_runs=True))
    assert "\n" not in str(refused.value), case
    with Ledger(site.ledger) as ledger:
        assert len(ledger.chained(frozenset({"run.refused"}))) == before + 1, "audited"
