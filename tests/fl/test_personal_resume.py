"""A site's own part of a personalised hub task outlives its SuperNode: kept in the site's
folder (private, under project, task hash and hub run), restored when a restarted node or
a resumed hub run (a new Flower run) sends the next round, never sent to the hub."""

import stat
from pathlib import Path

import pytest
import torch

from flip.config import SiteConfig
from flip.data.ledger import Ledger
from flip.fl import client
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


def _round(yaml: Path, spec, hub_run: int, flower_run: int, number: int, state, ctx=None):
    """Round `number` of hub run `hub_run` at the site: what it sent, and its context."""
    ctx = ctx or node_context(yaml, run=flower_run, hub_runs=True)
    msg = task_message(
        "train", spec, run=flower_run, server_round=number, hub_run=hub_run, arrays=state
    )
    return client.train(msg, ctx).content["arrays"].to_torch_state_dict(), ctx


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
