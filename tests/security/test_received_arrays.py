"""A hostile server's weights that cannot be the approved task's model (another number of
arrays, an array of another size, weights that are not finite floats) are refused with one
audited line before the site counts the round, spends epsilon or reads a row; before, they
raised from inside training after the round was counted and its epsilon charged."""

from __future__ import annotations

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
