"""Personalisation of hub tasks: the spec names it (and its hash covers it), the site keeps
its own part across a run's rounds, never sends it, and reports its personal model."""

import pytest
import torch
from pydantic import ValidationError

from flip.config import SiteConfig
from flip.data.ledger import Ledger
from flip.fl import personal
from flip.fl.client import Own, evaluate_round, train_round
from flip.fl.server import run_config
from flip.fl.tasks import mace_task, task_hash
from flip.fl.tasks.models import new_model
from tests.conftest import build_site

RECORD_DP = {"level": "record", "noise_multiplier": 1.0, "clipping_norm": 1.0, "clipping": "client"}


def _personal(mode: str, **more) -> object:
    extra = {"ditto_lambda": 0.1} if mode == "ditto" else {}
    update = {"kind": "tabular-mlp", "personal": mode, **extra, **more}
    spec = mace_task(scaling="fixed")
    return type(spec).model_validate({**spec.model_dump(), **update})


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    return SiteConfig.load(build_site(tmp_path_factory.mktemp("personal"), "alpha", "csv", 160))


def test_the_spec_names_its_personalisation_and_its_hash_covers_it():
    plain = mace_task()
    assert "personal" not in plain.canonical_json().decode(), "older tasks keep their hash"
    hashes = {task_hash(plain)}
    for mode in ("fedbn", "fedper", "ditto"):
        hashes.add(task_hash(_personal(mode)))
    hashes.add(task_hash(_personal("ditto", ditto_lambda=0.5)))
    assert len(hashes) == 5


@pytest.mark.parametrize(
    ("update", "says"),
    [
        ({"personal": "fedxx"}, "personal"),
        ({"personal": "ditto"}, "ditto needs it"),
        ({"personal": "ditto", "ditto_lambda": -1.0}, "greater than or equal to 0"),
        ({"personal": "ditto", "ditto_lambda": float("inf")}, "finite"),
        ({"personal": "fedbn", "ditto_lambda": 0.1}, "goes with personal: ditto"),
        ({"personal": "fedper", "kind": "custom", "code": "x = 1"}, "not custom"),
        ({"personal": "fedbn", "secure_aggregation": True}, "secure aggregation"),
        ({"personal": "fedper", "kind": "tabular-logreg"}, "use tabular-mlp"),
        (
            {"personal": "fedbn", "privacy": RECORD_DP},
            "DP-SGD",
        ),
    ],
)
def test_a_personalisation_that_cannot_run_is_refused_with_its_reason(update, says):
    spec = mace_task().model_dump()
    with pytest.raises(ValidationError, match=says):
        type(mace_task()).model_validate({**spec, **update})


def test_fedbn_puts_a_site_kept_batch_norm_before_the_model():
    model = new_model(_personal("fedbn"))
    assert personal.own_keys(model, "fedbn")[0].startswith("0.")


#: The Flower run carrying every round of a test's task (a site's part belongs to one run).
RUN = 2


def _run(site, spec, rounds: int = 2):
    Ledger(site.ledger).decide("p", task_hash(spec), "approved", by="admin")
    base = dict(run_config("p", spec))
    state = new_model(spec).state_dict()
    own = Own()
    sent = []
    for number in range(1, rounds + 1):
        config = {**base, "server-round": number}
        received = {k: v.clone() for k, v in state.items()}
        trained, _ = train_round(site, spec, config, received, run=RUN, own=own)
        sent.append((received, trained, {k: v.clone() for k, v in own.state.items()}))
        state = trained
    return sent, own, {**base, "server-round": rounds}, state


@pytest.mark.parametrize("mode", ["fedbn", "fedper"])
def test_the_site_keeps_its_own_layers_across_rounds_and_never_sends_them(site, mode):
    spec = _personal(mode)
    sent, _, _, _ = _run(site, spec)
    keys = personal.own_keys(new_model(spec), mode)
    for received, trained, kept in sent:
        assert set(kept) == set(keys)
        for key in keys:
            assert torch.equal(trained[key], received[key]), "its own layers leave as received"
        assert any(not torch.equal(kept[k], received[k]) for k in keys if "weight" in k)
    first, second = sent[0][2], sent[1][2]
    assert any(not torch.equal(first[k], second[k]) for k in keys if "weight" in k), (
        "round 2 trained on from the layers round 1 kept"
    )


def test_ditto_keeps_a_model_of_its_own_and_reports_it_beside_the_global_one(site):
    spec = _personal("ditto", ditto_lambda=0.01)
    sent, own, config, state = _run(site, spec)
    for _, trained, kept in sent:
        assert not all(torch.equal(trained[k], kept[k]) for k in kept), "its own model stays"
    metrics = evaluate_round(site, spec, config, state, run=RUN, own=own)
    assert {"auroc", "accuracy", "personal_auroc", "personal_accuracy"} <= set(metrics)
    assert metrics["auroc"] > 0.6
    flat = Own({k: torch.zeros_like(v) for k, v in state.items()}, own.owner)
    later = {**config, "server-round": 3}  # not round 2 again: that is the metrics released
    scored = evaluate_round(site, spec, later, state, run=RUN, own=flat)
    assert scored["personal_auroc"] == 0.5 and scored["auroc"] == metrics["auroc"], (
        "the personal model scored is the site's own, the global one the server's"
    )
