"""A site's personal state stays with its own task and run, and an evaluation carried with
a train reply releases no more than a separate one: no other split, no finer sizes, no
second count of a replayed round, and its refusal never refuses the training."""

import json
from pathlib import Path

import pytest
import torch

from flip.config import SiteConfig
from flip.data.ledger import Ledger
from flip.fl import client, personal
from flip.fl.carried import EVALUATE_RECEIVED, EVALUATED
from flip.fl.client import Own, evaluate_round, train_round
from flip.fl.server import run_config
from flip.fl.site_personal import about, kept
from flip.fl.tasks import mace_task, task_hash
from flip.fl.tasks.models import new_model
from tests.conftest import build_site, mlp_site
from tests.security.messages import node_context, task_message


def _spec(**update):
    spec = mace_task(scaling="fixed")
    return type(spec).model_validate({**spec.model_dump(), "kind": "tabular-mlp", **update})


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    return SiteConfig.load(mlp_site(tmp_path_factory.mktemp("isolation")))


def _approve(site, spec, project="p"):
    Ledger(site.ledger).decide(project, task_hash(spec), "approved", by="admin")


def test_personal_state_of_one_task_never_reaches_another_tasks_update(site):
    """A Ditto model (never sent) of task A must not become the start of task B's update
    when the same Flower run (one context.state) carries both tasks."""
    a = _spec(personal="ditto", ditto_lambda=0.001, name="A")
    b = _spec(personal="fedper", name="B", learning_rate=1e-12, local_epochs=1, l2=0.0)
    _approve(site, a, "p1")
    _approve(site, b, "p2")
    own = Own()  # one Own carried from task A's round to task B's
    state = new_model(a).state_dict()
    train_round(site, a, {**run_config("p1", a), "server-round": 1}, state, run=7, own=own)
    ditto = {k: v.clone() for k, v in own.state.items()}
    crafted = new_model(b).state_dict()
    sent, _ = train_round(
        site, b, {**run_config("p2", b), "server-round": 1}, crafted, run=7, own=own
    )
    head = personal.own_keys(new_model(b), "fedper")
    assert not torch.allclose(ditto["0.weight"], crafted["0.weight"]), "A's model trained"
    leaked = [k for k in sent if k not in head and torch.allclose(sent[k], ditto[k], atol=1e-6)]
    assert not leaked, f"task B sent task A's Ditto model (project p1) as its update: {leaked}"


def test_ditto_with_differential_privacy_is_refused_at_validation_and_at_the_site(site):
    """Ditto's own model trains outside any DP mechanism and its metrics leave: a spec
    pairing it with privacy is refused, by the hub's validation and by the site, which
    validates the task it is sent."""
    from pydantic import ValidationError

    for level in ("record", "site"):
        dp = {"level": level, "noise_multiplier": 50.0, "clipping_norm": 0.01, "clipping": "client"}
        with pytest.raises(ValidationError, match="ditto"):
            _spec(personal="ditto", ditto_lambda=0.1, name="dp-ditto", privacy=dp)
    spec = _spec(personal="ditto", ditto_lambda=0.1, name="dp-ditto-sent")
    config = dict(run_config("p", spec))
    dp = {"level": "record", "noise_multiplier": 50.0, "clipping_norm": 0.01}
    config["task"] = json.dumps({**spec.model_dump(mode="json"), "privacy": dp})
    with pytest.raises((ValidationError, client.NotApproved)):
        client.authorise(site, {**config, "server-round": 1})


def test_local_dp_does_not_random_walk_the_sites_own_layers(site):
    """Under local DP the site's own layers never leave, so they need no noise; noising them
    each round (never averaged) makes the kept head a random walk."""
    dp = {"level": "site", "noise_multiplier": 1.0, "clipping_norm": 1.0, "clipping": "client"}
    spec = _spec(personal="fedper", name="ldp-fedper", privacy=dp, rounds=8)
    _approve(site, spec)
    own = Own()
    state = new_model(spec).state_dict()
    head = personal.own_keys(new_model(spec), "fedper")
    start = {k: state[k].clone() for k in head}
    for n in range(1, 9):
        cfg = {**run_config("p", spec), "server-round": n}
        state, _ = train_round(site, spec, cfg, state, run=12, own=own)
    moved = torch.cat([(own.state[k] - start[k]).abs().flatten() for k in head if "weight" in k])
    drift = float(moved.median())
    # noise of sd z*C=1 each of 8 rounds: median |N(0, 8)| = 1.9; training alone moves ~0.2-0.6
    assert drift < 1.2, f"the kept head moved {drift:.1f} per weight: noise of sd z*C each round"
    cfg = {**run_config("p", spec), "server-round": 8}
    metrics = evaluate_round(site, spec, cfg, state, run=12, own=own)
    assert "auroc" in metrics and not [k for k in metrics if k.startswith("personal_")], (
        "the head trained outside the noise: its personal metrics stay at the site"
    )


def _site_yaml(site):
    return Path(site.ledger).parent / "site.yaml"


def _join(site, hub_run, project, spec):
    Ledger(site.ledger).record(
        "run.joined",
        {"run": hub_run, "project": project, "task_hash": task_hash(spec), "rounds": 3},
    )


def test_a_train_message_cannot_carry_a_test_split_evaluation(site):
    """Carried evaluation scores the received weights on the validation split; a server
    adding evaluate-split=test to round 1's train message must not get test metrics."""
    spec = _spec(name="carry-test", rounds=3)
    _approve(site, spec)
    _join(site, 41, "p", spec)
    msg = task_message("train", spec, run=21, hub_run=41)
    msg.content["config"][EVALUATE_RECEIVED] = True
    msg.content["config"]["evaluate-split"] = "test"
    reply = client.train(msg, node_context(_site_yaml(site), run=21, hub_runs=True))
    with Ledger(site.ledger) as ledger:
        tested = [d for _, d in ledger.chained(frozenset({"run.tested"})) if d.get("run") == 41]
    assert not tested, f"round 1's train reply used the run's test split: {tested}"
    assert EVALUATED in reply.content, "the carried evaluation is scored on the validation split"
    final = task_message("evaluate", spec, run=21, server_round=3, hub_run=41)
    final.content["config"]["evaluate-split"] = "test"
    client.evaluate(final, node_context(_site_yaml(site), run=21, hub_runs=True))


def test_one_context_state_carries_a_ditto_model_into_another_projects_task(site):
    """The first test through client.train: one Flower run of a site agent's SuperNode (one
    context.state) carrying hub runs of two approved, joined tasks of two projects."""
    a = _spec(personal="ditto", ditto_lambda=0.001, name="A2")
    b = _spec(personal="fedper", name="B2", learning_rate=1e-12, local_epochs=1, l2=0.0)
    _approve(site, a, "q1")
    _approve(site, b, "q2")
    _join(site, 51, "q1", a)
    _join(site, 52, "q2", b)
    ctx = node_context(_site_yaml(site), run=31, hub_runs=True)
    init = new_model(a).state_dict()
    client.train(task_message("train", a, run=31, project="q1", hub_run=51, arrays=init), ctx)
    ditto = kept(ctx, about(run_config("q1", a), "hub-51"))
    assert ditto is not None, "task A's Ditto model is kept for task A's next round"
    msg = task_message("train", b, run=31, project="q2", hub_run=52, arrays=init)
    sent = client.train(msg, ctx).content["arrays"].to_torch_state_dict()
    assert not torch.allclose(sent["0.weight"], ditto["0.weight"], atol=1e-6), (
        "project q2's task sent project q1's Ditto model (first layer) to the server"
    )


def test_an_evaluation_releases_no_size_finer_than_the_sites_rounding(site):
    """The site rounds the split sizes it releases (round_counts_to); the metrics of the
    same reply must not carry the exact test-split size as num-examples."""
    yaml = _site_yaml(site)
    config = SiteConfig.load(yaml)
    policy = config.policy.model_copy(update={"round_counts_to": 7})
    config.model_copy(update={"policy": policy}).save(yaml)
    spec = _spec(name="sizes", rounds=2)
    _approve(site, spec)
    msg = task_message("evaluate", spec, run=61)
    msg.content["config"]["evaluate-split"] = "test"
    reply = client.evaluate(msg, node_context(yaml, run=61))
    sizes = dict(reply.content["site"])
    n = reply.content["metrics"]["num-examples"]
    assert n % 7 == 0, f"sizes released rounded to 7 ({sizes}), but num-examples = {n}"


def test_a_round_whose_train_replies_carry_no_metrics_does_not_shift_later_rounds():
    """If every reply to one round fails, the model they would have scored stays unscored;
    each later carried score is recorded under the round whose model it scored."""
    from flwr.app import ArrayRecord, ConfigRecord, RecordDict

    from flip.fl.carried import CarriedEvaluation
    from tests.fl.test_carried import Inner, Reply, _reply

    scores: dict[int, float] = {}  # round number -> score of that round's global model
    carried = CarriedEvaluation(
        Inner(), 10, 6, lambda n: n in scores, lambda n, m: scores.__setitem__(n, m["auroc"])
    )
    for number in range(1, 6):
        carried.configure_train(number, ArrayRecord(), ConfigRecord({}), None)
        failed = number == 3  # every site's reply to round 3 failed (a cut link, a refusal)
        # round `number`'s replies score round number-1's model, as `number / 10` here
        replies = [Reply(RecordDict(), error=True)] if failed else [_reply(number / 10, 1.0)]
        carried.aggregate_train(number, replies)
    assert scores == {n: pytest.approx((n + 1) / 10) for n in (1, 3, 4)}


def test_the_server_keeps_round_metrics_under_their_round_numbers():
    """A round without metrics leaves a gap in the server's record, not a shift: later
    rounds' metrics stay under their numbers, and the best round is judged by number."""
    from flip.fl.server import FederatedResult

    result = FederatedResult()
    result.record(1, {"auroc": 0.6})
    result.record(3, {"auroc": 0.7})
    result.record(4, {"auroc": 0.65})
    assert [r.get("auroc") for r in result.rounds] == [0.6, None, 0.7, 0.65]
    result.best_round = 1
    assert result.is_best(3) and not result.is_best(2)
    result.best_round = 3
    assert not result.is_best(4), "round 4 (0.65) is judged against round 3 (0.7), not 0.6"


def test_a_refused_carried_evaluation_does_not_refuse_the_training(tmp_path):
    """A site whose policy allows one evaluation of the task refuses the second; with the
    evaluation carried in the train message that refusal must not also stop the training."""
    yaml = build_site(tmp_path, "beta", "csv", 160)
    config = SiteConfig.load(yaml)
    config.model_copy(
        update={"policy": config.policy.model_copy(update={"max_evaluations": 1})}
    ).save(yaml)
    beta = SiteConfig.load(yaml)
    spec = _spec(kind="tabular-logreg", name="cap", rounds=4)
    _approve(beta, spec)
    state = new_model(spec).state_dict()
    for number in (1, 2, 3):
        msg = task_message("train", spec, run=71, server_round=number, arrays=state)
        msg.content["config"][EVALUATE_RECEIVED] = number > 1
        try:
            reply = client.train(msg, node_context(yaml, run=71))
        except client.NotApproved as exc:
            pytest.fail(f"round {number}'s training was refused with its evaluation: {exc}")
        state = reply.content["arrays"].to_torch_state_dict()


def test_central_dp_aggregates_a_fedbn_models_updates(site):
    """FedBN (a batch norm: an int64 batch counter in its state) is allowed with central DP;
    the server's clipping of a site's update must not fail on that counter."""
    import numpy as np
    from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
    from flwr.common import MessageType
    from flwr.supercore.task_identity import TaskIdentity

    from flip.fl.privacy import PrivacySpec, with_privacy
    from flip.fl.strategies import make_strategy
    from tests.fl.test_privacy_accounting import _Grid

    TaskIdentity.run_id, TaskIdentity.task_id, TaskIdentity.node_id = 1, 1, 0
    dp = PrivacySpec(noise_multiplier=1.0, clipping_norm=0.1)
    spec = _spec(personal="fedbn", name="bn-central", privacy=dp.model_dump(), rounds=2)
    start = new_model(spec).state_dict()
    wrapper = with_privacy(make_strategy("fedavg", 2, 0.1), dp, 2)
    list(wrapper.configure_train(1, ArrayRecord(start), ConfigRecord({}), _Grid(2)))
    replies = []
    for _ in range(2):
        moved = {
            k: v + 1 if v.is_floating_point() else v for k, v in start.items()
        }  # counter as received
        content = RecordDict(
            {"arrays": ArrayRecord(moved), "metrics": MetricRecord({"num-examples": 1.0})}
        )
        replies.append(Message(content, dst_node_id=0, message_type=MessageType.TRAIN))
    arrays, _ = wrapper.aggregate_train(1, replies)
    assert arrays is not None and np.isfinite(arrays.to_numpy_ndarrays()[0]).all()


def test_a_resumed_hub_run_replaying_a_round_keeps_its_last_validation_evaluation(tmp_path):
    """A hub resumed after a crash resends round 2 from the same weights (replayed, not
    counted); its carried evaluation must not use up the run's last validation evaluation."""
    yaml = build_site(tmp_path, "gamma", "csv", 160)
    gamma = SiteConfig.load(yaml)
    spec = _spec(kind="tabular-logreg", name="replay", rounds=2)
    _approve(gamma, spec)
    _join(gamma, 81, "p", spec)
    state = new_model(spec).state_dict()
    msg = task_message("train", spec, run=91, server_round=1, hub_run=81, arrays=state)
    state = client.train(msg, node_context(yaml, run=91, hub_runs=True)).content["arrays"]
    state = state.to_torch_state_dict()
    for flower_run in (92, 93):  # the crash, then the resumed Flower run sends round 2 again
        msg = task_message("train", spec, run=flower_run, server_round=2, hub_run=81, arrays=state)
        msg.content["config"][EVALUATE_RECEIVED] = True
        reply = client.train(msg, node_context(yaml, run=flower_run, hub_runs=True))
    final = reply.content["arrays"].to_torch_state_dict()
    msg = task_message("evaluate", spec, run=93, server_round=2, hub_run=81, arrays=final)
    try:
        client.evaluate(msg, node_context(yaml, run=93, hub_runs=True))
    except client.NotApproved as exc:
        pytest.fail(f"round 2's model could not be scored after the replay: {exc}")


def test_a_kept_part_holding_other_layers_than_the_mode_keeps_is_refused():
    """personal.with_own loads only the layers the mode keeps: a whole model (a Ditto model
    of another task) offered as a FedPer head is refused, not loaded."""
    spec = _spec(personal="fedper", name="own-only")
    model = new_model(spec)
    head = personal.own_keys(model, "fedper")
    whole = {k: torch.zeros_like(v) for k, v in model.state_dict().items()}
    with pytest.raises(personal.ForeignState):
        personal.with_own(model, "fedper", whole)
    personal.with_own(model, "fedper", {k: whole[k] for k in head})
    assert all(torch.equal(model.state_dict()[k], whole[k]) for k in head)


def test_under_dp_a_carried_evaluation_leaves_as_the_train_reply_does(site):
    """Under DP the train reply carries num-examples = 1 and no loss; the evaluation carried
    in the same reply must not bring back the exact count or loss."""
    dp = {"level": "site", "noise_multiplier": 1.0, "clipping_norm": 1.0, "clipping": "client"}
    spec = _spec(name="dp-carried", privacy=dp, rounds=3)
    _approve(site, spec)
    msg = task_message("train", spec, run=101, server_round=2)
    msg.content["config"][EVALUATE_RECEIVED] = True
    reply = client.train(msg, node_context(_site_yaml(site), run=101))
    carried = dict(reply.content[EVALUATED])
    assert carried["num-examples"] == 1.0 and "loss" not in carried, carried
    assert "auroc" in carried, "the outcome's metrics still score the round"


def test_evaluate_replies_are_aggregated_under_the_round_they_evaluate():
    """The server's evaluate aggregation has no round number of its own: ContinuedRounds
    says which round of the whole run it is aggregating (a resumed run's included)."""
    from flip.fl.resume import ContinuedRounds
    from tests.fl.test_carried import Inner

    continued = ContinuedRounds(Inner(), 4)
    continued.aggregate_evaluate(2, [])
    assert continued.evaluating == 6
