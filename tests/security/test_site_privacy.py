"""Issue 20: a site enforces the privacy it approved, whatever the server sends.

Flower messages are handed to FLIP's own ClientApp as a SuperNode would hand them; the
site's store, ledger and policy are real. Epsilons are checked against dp-accounting,
composed here for the mechanism the site really ran.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from dp_accounting import dp_event
from dp_accounting.rdp import rdp_privacy_accountant

from flip.config import SiteConfig, SitePolicy
from flip.data.ledger import Ledger
from flip.fl.client import NotApproved, app
from flip.fl.privacy import KEY_PRIVACY, PrivacySpec, privacy_config
from flip.fl.splits import EVALUATE_SPLIT
from flip.fl.tasks import mace_task, task_hash
from flip.fl.tasks.models import new_model
from tests.conftest import build_site
from tests.security.messages import node_context, task_message


@pytest.fixture(scope="module")
def store_yaml(tmp_path_factory) -> Path:
    """A site of 120 patients (its store is shared; each test gets its own ledger)."""
    return build_site(tmp_path_factory.mktemp("privacy"), "alpha", "csv", 120)


def _site(store_yaml: Path, tmp_path: Path, **policy) -> Path:
    """A site.yaml on the shared store with a fresh ledger and the given policy."""
    site = SiteConfig.load(store_yaml).model_copy(
        update={"ledger": str(tmp_path / "ledger.sqlite"), "policy": SitePolicy(**policy)}
    )
    path = tmp_path / "site.yaml"
    site.save(path)
    return path


def _ask(kind, spec, site_yaml, *, run, server_round=1, strategy="fedavg", step=0.0, **extra):
    """Send the site one `kind` message of `run` as a server running `spec` would, from a
    fresh model's weights moved by `step` (a site answers the same round from the same
    weights again without training: `flip.fl.replay`)."""
    arrays = {k: v + step for k, v in new_model(spec).state_dict().items()}
    message = task_message(kind, spec, run=run, server_round=server_round, arrays=arrays)
    message.content["config"].update({**privacy_config(spec.privacy, strategy), **extra})
    return app(message, node_context(site_yaml, run=run))


def _approve(site_yaml: Path, spec) -> Ledger:
    ledger = Ledger(SiteConfig.load(site_yaml).ledger)
    ledger.decide("p", task_hash(spec), "approved", by="admin")
    return ledger


def _rdp_epsilon(event, count: int, delta: float) -> float:
    accountant = rdp_privacy_accountant.RdpAccountant()
    accountant.compose(dp_event.SelfComposedDpEvent(event, count))
    return accountant.get_epsilon(delta)


def _update_norm(reply, spec) -> float:
    start = new_model(spec).state_dict()
    trained = reply.content["arrays"].to_torch_state_dict()
    return math.sqrt(sum(float(((trained[k] - start[k]) ** 2).sum()) for k in start))


def test_under_local_dp_the_site_clips_to_the_approved_norm_whatever_the_server_sends(
    store_yaml, tmp_path
):
    site_yaml = _site(store_yaml, tmp_path)
    privacy = PrivacySpec(clipping="client", noise_multiplier=1e-9, clipping_norm=0.01)
    spec = mace_task(scaling="fixed").model_copy(update={"rounds": 3, "privacy": privacy})
    _approve(site_yaml, spec)
    loose = privacy.model_copy(update={"clipping_norm": 1e6})
    reply = _ask(
        "train",
        spec,
        site_yaml,
        run=1,
        clipping_norm=1e6,  # Flower's key for a server-chosen norm: ignored
        **{"flip-privacy": loose.model_dump_json()},
    )
    assert _update_norm(reply, spec) == pytest.approx(0.01, rel=1e-4)


def test_under_local_dp_the_site_noises_its_update_itself(store_yaml, tmp_path):
    site_yaml = _site(store_yaml, tmp_path)
    privacy = PrivacySpec(clipping="client", noise_multiplier=4.0, clipping_norm=0.01)
    spec = mace_task(scaling="fixed").model_copy(update={"rounds": 3, "privacy": privacy})
    _approve(site_yaml, spec)
    norms = [_update_norm(_ask("train", spec, site_yaml, run=2), spec) for _ in range(3)]
    weights = sum(v.numel() for v in new_model(spec).state_dict().values())
    # clipped update (norm <= C) + noise of norm ~ z*C*sqrt(weights)
    expected = 4.0 * 0.01 * math.sqrt(weights)
    assert all(0.4 * expected < n < 1.6 * expected + 0.01 for n in norms), (norms, expected)


def test_the_site_budget_sums_epsilon_across_runs_and_refuses_past_the_ceiling(
    store_yaml, tmp_path
):
    privacy = PrivacySpec(noise_multiplier=3.0, clipping_norm=1.0)
    spec = mace_task(scaling="fixed").model_copy(update={"rounds": 3, "privacy": privacy})
    gaussian = dp_event.GaussianDpEvent(3.0)
    one, three = (_rdp_epsilon(gaussian, k, 1e-5) for k in (1, 3))
    ceiling = three + one + 0.01  # room for one run and one round of the next
    site_yaml = _site(store_yaml, tmp_path, max_epsilon=ceiling)
    ledger = _approve(site_yaml, spec)
    for step in range(3):
        _ask("train", spec, site_yaml, run=10, step=step / 100)
    _ask("train", spec, site_yaml, run=11)
    with pytest.raises(NotApproved, match="above the site's ceiling"):
        _ask("train", spec, site_yaml, run=11, step=0.01)
    assert ledger.spent() == pytest.approx(three + one, rel=1e-6)
    trained = [json.loads(e["detail"]) for e in ledger.entries() if e["action"] == "run.trained"]
    assert trained[-1]["epsilon_total"] == pytest.approx(three + one, rel=1e-5)
    assert trained[-1]["private"] is True, "the agent shares a DP round's entry without loss"
    # Another task on the same cohort draws on the same budget.
    other = spec.model_copy(update={"learning_rate": 0.05})
    _approve(site_yaml, other)
    with pytest.raises(NotApproved, match="above the site's ceiling"):
        _ask("train", other, site_yaml, run=12)


def test_evaluations_are_bounded_per_run_and_need_a_round_number(store_yaml, tmp_path):
    site_yaml = _site(store_yaml, tmp_path)
    spec = mace_task(scaling="fixed").model_copy(update={"rounds": 2})
    _approve(site_yaml, spec)
    for number in (1, 2):  # one a round
        assert "metrics" in _ask("evaluate", spec, site_yaml, run=20, server_round=number).content
    with pytest.raises(NotApproved, match="already had the 2 validation evaluations"):
        _ask("evaluate", spec, site_yaml, run=20, server_round=1)
    # and the final evaluation, on the test split
    final = _ask("evaluate", spec, site_yaml, run=20, server_round=2, **{EVALUATE_SPLIT: "test"})
    assert "metrics" in final.content
    message = task_message("evaluate", spec, run=21)
    del message.content["config"]["server-round"]
    with pytest.raises(NotApproved, match="named no round number"):
        app(message, node_context(site_yaml, run=21))


def test_record_level_dp_sgd_reports_the_epsilon_of_the_steps_it_took(store_yaml, tmp_path):
    site_yaml = _site(store_yaml, tmp_path, max_epsilon=50.0)
    privacy = PrivacySpec(level="record", clipping="client", noise_multiplier=1.1, clipping_norm=1)
    spec = mace_task(scaling="fixed").model_copy(
        update={"rounds": 2, "privacy": privacy, "batch_size": 16, "local_epochs": 2}
    )
    ledger = _approve(site_yaml, spec)
    for step in range(2):
        reply = _ask("train", spec, site_yaml, run=30, step=step / 100)
        assert dict(reply.content["metrics"]) == {"num-examples": 1.0}  # no exact loss leaves
    trained = [json.loads(e["detail"]) for e in ledger.entries() if e["action"] == "run.trained"]
    assert np.isfinite(trained[-1]["loss"])  # kept in the site's own audit
    n = trained[-1]["n_train"]
    batches = math.ceil(n / 16)
    sampled = dp_event.PoissonSampledDpEvent(1 / batches, dp_event.GaussianDpEvent(1.1))
    expected = _rdp_epsilon(sampled, 2 * 2 * batches, 1e-5)
    assert trained[-1]["epsilon_run"] == pytest.approx(expected, rel=0.05)
    assert trained[0]["epsilon_run"] < trained[-1]["epsilon_run"]


def test_under_central_dp_the_site_refuses_a_server_running_other_privacy(store_yaml, tmp_path):
    site_yaml = _site(store_yaml, tmp_path)
    privacy = PrivacySpec(noise_multiplier=1.0, clipping_norm=1.0)
    spec = mace_task(scaling="fixed").model_copy(update={"rounds": 3, "privacy": privacy})
    ledger = _approve(site_yaml, spec)
    assert "arrays" in _ask("train", spec, site_yaml, run=40).content
    weaker = privacy.model_copy(update={"noise_multiplier": 0.1})
    with pytest.raises(NotApproved, match="not the one the site approved"):
        _ask("train", spec, site_yaml, run=41, **{"flip-privacy": weaker.model_dump_json()})
    with pytest.raises(NotApproved, match="fedadam releases more than that"):
        _ask("train", spec, site_yaml, run=42, strategy="fedadam")
    with pytest.raises(NotApproved, match="not the approved 'fedavg'"):
        _ask("train", spec, site_yaml, run=44, strategy="fedprox")  # accountable, not approved
    silent = task_message("train", spec, run=43)  # no privacy named at all
    with pytest.raises(NotApproved, match="not the one the site approved"):
        app(silent, node_context(site_yaml, run=43))
    refused = [e for e in ledger.entries() if e["action"] == "run.refused"]
    assert len(refused) == 4
    trained = [e for e in ledger.entries() if e["action"] == "run.trained"]
    assert len(trained) == 1, "nothing trained for the refused runs"


def test_the_test_split_answers_once_a_run_and_the_same_weights_again_get_the_same_metrics(
    store_yaml, tmp_path
):
    """A server asked for the test split's metrics at every round (rounds + 1 exact queries
    of the test rows, and a 'best round' picked on them); the site answers the test split
    once a run. Asked again from the same weights (a hub resumed after a crash in its final
    evaluation) it gets the metrics it had, with no row read and nothing counted."""
    site_yaml = _site(store_yaml, tmp_path)
    spec = mace_task(scaling="fixed").model_copy(update={"rounds": 3})
    ledger = _approve(site_yaml, spec)
    test = {EVALUATE_SPLIT: "test"}
    first = _ask("evaluate", spec, site_yaml, run=60, server_round=1, **test)
    again = _ask("evaluate", spec, site_yaml, run=60, server_round=3, **test)
    assert dict(again.content["metrics"]) == dict(first.content["metrics"])
    other = {k: v + 0.1 for k, v in new_model(spec).state_dict().items()}
    message = task_message("evaluate", spec, run=60, server_round=2, arrays=other)
    message.content["config"][EVALUATE_SPLIT] = "test"
    with pytest.raises(NotApproved, match="its one evaluation on the test split"):
        app(message, node_context(site_yaml, run=60))
    actions = [e["action"] for e in ledger.entries()]
    assert actions.count("run.tested") == 1 and actions.count("run.replayed") == 1
    # Another run has its own final evaluation.
    assert "metrics" in _ask("evaluate", spec, site_yaml, run=61, server_round=3, **test).content


def test_under_central_dp_a_site_refuses_to_evaluate_for_a_server_running_other_privacy(
    store_yaml, tmp_path
):
    """Evaluation is part of the run the site approved: under central DP a server naming
    weaker privacy, none, or no privacy spec at all (garbage) is refused and audited; the
    garbage used to crash the ClientApp with a validation error, unaudited."""
    site_yaml = _site(store_yaml, tmp_path)
    privacy = PrivacySpec(noise_multiplier=1.0, clipping_norm=1.0)
    spec = mace_task(scaling="fixed").model_copy(update={"rounds": 3, "privacy": privacy})
    ledger = _approve(site_yaml, spec)
    weaker = privacy.model_copy(update={"noise_multiplier": 0.1}).model_dump_json()
    for kind, run, sent in (
        ("evaluate", 70, weaker),
        ("evaluate", 71, "garbage"),
        ("train", 72, "garbage"),
        ("train", 73, '{"noise_multiplier": "lots"}'),
    ):
        with pytest.raises(NotApproved, match="not the one the site approved"):
            _ask(kind, spec, site_yaml, run=run, **{KEY_PRIVACY: sent})
    silent = task_message("evaluate", spec, run=74)  # no privacy named at all
    with pytest.raises(NotApproved, match="not the one the site approved"):
        app(silent, node_context(site_yaml, run=74))
    refused = [e for e in ledger.entries() if e["action"] == "run.refused"]
    assert len(refused) == 5
    assert "metrics" in _ask("evaluate", spec, site_yaml, run=75).content
