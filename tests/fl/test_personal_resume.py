"""A site's own part of a personalised hub task outlives its SuperNode: kept in the site's
folder (private, under project, task hash and hub run), restored when a restarted node or
a resumed hub run (a new Flower run) sends the next round, never sent to the hub."""

import stat
from pathlib import Path

import pytest
import torch

from flip.config import SiteConfig
from flip.data.ledger import Ledger
from flip.fl import client, site_personal
from flip.fl.carried import EVALUATE_RECEIVED, EVALUATED
from flip.fl.server import run_config
from flip.fl.site_personal import about, kept
from flip.fl.tasks import mace_task, task_hash
from flip.fl.tasks.models import new_model
from tests.conftest import mlp_site
from tests.security.messages import node_context, task_message


def _spec(mode: str) -> object:
    spec = mace_task(scaling="fixed")
    extra = {"ditto_lambda": 0.1} if mode == "ditto" else {}
    update = {"kind": "tabular-mlp", "personal": mode, "rounds": 3, **extra}
    return type(spec).model_validate({**spec.model_dump(), **update, "name": f"resume-{mode}"})


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    return mlp_site(tmp_path_factory.mktemp("resume"))


def _joined(yaml: Path, spec, hub_run: int) -> None:
    ledger = Ledger(SiteConfig.load(yaml).ledger)
    ledger.decide("p", task_hash(spec), "approved", by="admin")
    ledger.record(
        "run.joined", {"run": hub_run, "project": "p", "task_hash": task_hash(spec), "rounds": 3}
    )


def _message(spec, hub_run: int, flower_run: int, number: int, state, carried: bool):
    msg = task_message(
        "train", spec, run=flower_run, server_round=number, hub_run=hub_run, arrays=state
    )
    msg.content["config"][EVALUATE_RECEIVED] = carried
    return msg


def _round(
    yaml: Path, spec, hub_run: int, flower_run: int, number: int, state, ctx=None, carried=False
):
    """Round `number` of hub run `hub_run` at the site (asked to score the weights received
    too, when `carried`): what it sent, and its context."""
    ctx = ctx or node_context(yaml, run=flower_run, hub_runs=True)
    msg = _message(spec, hub_run, flower_run, number, state, carried)
    return client.train(msg, ctx).content["arrays"].to_torch_state_dict(), ctx


def _validated(yaml: Path) -> int:
    with Ledger(SiteConfig.load(yaml).ledger) as ledger:
        return len(ledger.chained(frozenset({"run.validated"})))


def _own(ctx, spec, hub_run: int):
    return kept(ctx, about(run_config("p", spec, hub_run), f"hub-{hub_run}"))


@pytest.mark.parametrize("mode", ["fedbn", "fedper", "ditto"])
def test_a_restarted_site_continues_with_its_own_layers(site, mode):
    """Hub run A trains rounds 1 and 2 in one SuperNode; hub run B trains round 1, its node
    restarts (a fresh node state, a new Flower run), and round 2 comes. Same data, seeds
    and global weights: B's round 2 must send and keep what A's did."""
    spec = _spec(mode)
    start = new_model(spec).state_dict()
    hub_a, hub_b = {"fedbn": (11, 12), "fedper": (21, 22), "ditto": (31, 32)}[mode]
    _joined(site, spec, hub_a)
    _joined(site, spec, hub_b)
    after_a, ctx_a = _round(site, spec, hub_a, 100 + hub_a, 1, start)
    sent_a, ctx_a = _round(site, spec, hub_a, 100 + hub_a, 2, after_a, ctx_a)
    after_b, _ = _round(site, spec, hub_b, 100 + hub_b, 1, start)
    assert all(torch.equal(after_a[k], after_b[k]) for k in after_a), "same round 1"
    sent_b, ctx_b = _round(site, spec, hub_b, 200 + hub_b, 2, after_b)  # a fresh node state
    own_a, own_b = _own(ctx_a, spec, hub_a), _own(ctx_b, spec, hub_b)
    assert set(own_a) == set(own_b)
    for key in own_a:
        assert torch.allclose(own_a[key], own_b[key], atol=1e-6), (
            f"the restarted site's own {key} did not go on from round 1's"
        )
    for key in sent_a:
        assert torch.allclose(sent_a[key], sent_b[key], atol=1e-6), (
            f"the restarted site sent another {key} than an unbroken one"
        )


def test_the_kept_part_is_private_to_the_site_and_a_tampered_one_is_not_restored(site):
    spec = _spec("fedper")
    _joined(site, spec, 41)
    start = new_model(spec).state_dict()
    after, ctx = _round(site, spec, 41, 141, 1, start)
    folder = Path(SiteConfig.load(site).ledger).parent / "personal"
    files = list(folder.iterdir())
    assert files, "the site keeps its own part in its folder"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    owner = about(run_config("p", spec, 41), "hub-41")
    (path,) = folder.glob(f"{owner}.*.pt")
    torch.save({k: torch.zeros_like(v) for k, v in _own(ctx, spec, 41).items()}, path)
    _round(site, spec, 41, 241, 2, after)  # a fresh node state finds the altered file
    with Ledger(SiteConfig.load(site).ledger) as ledger:
        lost = [d for _, d in ledger.chained(frozenset({"run.personal_lost"})) if d["run"] == 41]
    assert lost, "a kept part that is not the one the site wrote is audited, not restored"


def test_a_crash_between_the_new_part_and_its_ledger_entry_keeps_the_last_one(tmp_path):
    """The new part is written before the ledger names it: until then (a site killed in
    between) the part the ledger names is still there to restore."""
    from flip.fl import site_personal

    ledger = str(tmp_path / "ledger.sqlite")
    first = site_personal.save(ledger, "owner", {"w": torch.ones(2)})
    second = site_personal.save(ledger, "owner", {"w": torch.zeros(2)})
    assert torch.equal(site_personal.load(ledger, "owner", first)["w"], torch.ones(2))
    site_personal.prune(ledger, "owner", second)
    assert site_personal.load(ledger, "owner", first) is None
    assert torch.equal(site_personal.load(ledger, "owner", second)["w"], torch.zeros(2))
    assert len(list((tmp_path / "personal").iterdir())) == 1


def _refusals(yaml: Path, hub_run: int) -> list[str]:
    with Ledger(SiteConfig.load(yaml).ledger) as ledger:
        refused = ledger.chained(frozenset({"run.refused"}))
    return [str(d["reason"]) for _, d in refused if f"hub run {hub_run}" in str(d["reason"])]


def _trained_rounds(yaml: Path, hub_run: int) -> list[int]:
    with Ledger(SiteConfig.load(yaml).ledger) as ledger:
        trained = ledger.chained(frozenset({"run.trained"}))
    return [d["round"] for _, d in trained if d.get("run") == hub_run]


def test_a_finished_run_named_again_restores_nothing(site):
    """Hub run A ends (the site missed round 2, trained 1 and 3, then answered A's final
    evaluation). A hub resuming run B but naming A must not get A's own layers trained or
    scored again: the site refuses, audited, and trains nothing more for A."""
    spec = _spec("fedper")
    _joined(site, spec, 51)
    start = new_model(spec).state_dict()
    after_1, ctx = _round(site, spec, 51, 151, 1, start)
    after_3, ctx = _round(site, spec, 51, 151, 3, after_1, ctx)
    final = task_message("evaluate", spec, run=151, server_round=3, hub_run=51, arrays=after_3)
    final.content["config"]["evaluate-split"] = "test"
    client.evaluate(final, ctx)
    with pytest.raises(client.NotApproved, match="over"):
        _round(site, spec, 51, 251, 2, start)  # a new Flower run, its node state fresh
    fresh = node_context(site, run=252, hub_runs=True)
    scored = task_message("evaluate", spec, run=252, server_round=1, hub_run=51, arrays=start)
    with pytest.raises(client.NotApproved, match="over"):
        client.evaluate(scored, fresh)
    assert _trained_rounds(site, 51) == [1, 3]
    assert len(_refusals(site, 51)) == 2


def test_a_checkpoint_behind_the_sites_last_round_is_refused_then_the_run_goes_on(site):
    """The site trained rounds 1 and 2 of hub run C; the hub resumes from round 1's
    checkpoint and sends round 2 from other weights. The site's own layers are ahead of the
    server's: it refuses (audited, nothing counted) rather than train round 2 again from
    round 2's layers, and it trains round 3 when it comes."""
    spec = _spec("fedbn")
    _joined(site, spec, 61)
    start = new_model(spec).state_dict()
    after_1, ctx = _round(site, spec, 61, 161, 1, start)
    after_2, ctx = _round(site, spec, 61, 161, 2, after_1, ctx)
    other = {k: v + 0.01 if v.is_floating_point() else v for k, v in after_1.items()}
    validated = _validated(site)
    with pytest.raises(client.NotApproved, match="behind"):
        _round(site, spec, 61, 261, 2, other, carried=True)
    assert _validated(site) == validated, "a refused round scores nothing either"
    (reason,) = _refusals(site, 61)
    assert "\n" not in reason and "round 2" in reason
    replayed, _ = _round(site, spec, 61, 262, 2, after_1)  # the same weights: a replay
    assert all(torch.equal(replayed[k], after_2[k]) for k in after_2)
    _round(site, spec, 61, 262, 3, after_2)
    assert _trained_rounds(site, 61) == [1, 2, 3]


def test_a_carried_evaluation_scores_the_own_layers_the_round_started_from(site):
    """The weights received in round 2 are round 1's global model: the personal model the
    reply carries is scored with the site's own layers after round 1, not round 2's."""
    spec = _spec("fedper")
    _joined(site, spec, 71)
    after_1, ctx = _round(site, spec, 71, 171, 1, new_model(spec).state_dict())
    own_1 = {k: v.clone() for k, v in _own(ctx, spec, 71).items()}
    reply = client.train(_message(spec, 71, 171, 2, after_1, carried=True), ctx)
    site_config = SiteConfig.load(site)
    config = {**dict(run_config("p", spec, 71)), "server-round": 2}
    _, validation = client.fit_and_validation(site_config, spec, config)
    device = client.site_device(site_config)
    expected = site_personal.personal_metrics(spec, after_1, own_1, validation, device)
    carried = dict(reply.content[EVALUATED])
    for name, value in expected.items():
        assert carried[name] == pytest.approx(value), name
