"""Exact resume: a run stopped after any round and resumed ends with an unbroken run's weights."""

import dataclasses

import numpy as np
import pytest
import torch

from flip.fl.checkpoint import load as load_checkpoint
from flip.fl.experiment import CHECKPOINT, ExperimentOptions, federated, prepare
from flip.fl.privacy import PrivacySpec
from flip.fl.resume import (
    ContinuedRounds,
    random_state,
    restore_random,
    restore_strategy,
    seed_server,
    strategy_state,
)
from flip.fl.strategies import make_strategy
from tests.fl.messy import write_sites


def test_strategy_state_and_random_streams_come_back_as_they_were():
    from flip.fl.privacy import with_privacy

    spec = PrivacySpec(noise_multiplier=1.0, clipping_norm=2.0, adaptive=True)
    strategy = with_privacy(make_strategy("fedadam", 2, 0.1), spec, 2)
    inner = strategy.strategy
    inner.m_t = {"w": np.arange(3.0)}
    inner.v_t = {"w": np.full(3, 0.5)}
    strategy.clipping_norm = 0.7
    seed_server(5)
    np.random.normal()
    saved, streams = strategy_state(strategy), random_state()
    expected = (np.random.normal(size=3), __import__("random").random())

    fresh = with_privacy(make_strategy("fedadam", 2, 0.1), spec, 2)
    restore_strategy(fresh, saved)
    restore_random(streams)

    assert fresh.clipping_norm == 0.7
    assert np.array_equal(fresh.strategy.m_t["w"], np.arange(3.0))
    assert np.array_equal(fresh.strategy.v_t["w"], np.full(3, 0.5))
    assert np.array_equal(np.random.normal(size=3), expected[0])
    assert __import__("random").random() == expected[1]
    with pytest.raises(ValueError, match="not this run's"):
        restore_strategy(make_strategy("fedadam", 2, 0.1), saved)


def test_continued_rounds_number_the_wrapped_strategys_rounds_from_the_checkpoint():
    seen = []

    class Recording(type(make_strategy("fedavg", 1, 0.1))):
        def aggregate_train(self, server_round, replies):
            seen.append(server_round)
            return None, None

    ContinuedRounds(Recording(), 4).aggregate_train(1, [])
    assert seen == [5]


@pytest.fixture(scope="module")
def prepared_sites(tmp_path_factory):
    sites = write_sites(tmp_path_factory.mktemp("messy"))
    options = ExperimentOptions(sites=sites, target="num", positive="num>0", local_epochs=2)
    return options, prepare(options)


def _weights(folder):
    return load_checkpoint(folder / CHECKPOINT).state_dict


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["fedadam", "fedavg"])
def test_a_run_resumed_after_round_1_and_3_ends_with_the_weights_of_an_unbroken_run(
    prepared_sites, tmp_path, strategy
):
    """FedAdam (server moments, bias correction by round), and FedAvg under server-side DP
    with adaptive clipping (a clipping norm and noise drawn each round; central DP accounts
    only an equal-weight mean, so not under FedAdam): every piece of state counts."""
    base, prepared = prepared_sites
    privacy = None
    if strategy == "fedavg":
        privacy = PrivacySpec(noise_multiplier=0.3, clipping_norm=0.5, adaptive=True)
    options = dataclasses.replace(base, strategy=strategy, privacy=privacy, seed=7)

    def run(rounds, folder):
        return federated(dataclasses.replace(options, rounds=rounds, checkpoint=folder), prepared)

    whole = tmp_path / "whole"
    run(4, whole)
    broken = tmp_path / "broken"
    for rounds in (1, 3, 4):  # stopped after round 1, then after round 3, then to the end
        run(rounds, broken)

    diffs = {k: float((v - _weights(broken)[k]).abs().max()) for k, v in _weights(whole).items()}
    print("max abs weight difference, resumed vs unbroken:", diffs)
    assert max(diffs.values()) < 1e-5, diffs
    moved = max(float(v.abs().max()) for v in _weights(whole).values())
    assert moved > 1e-2, "the model trained: equal weights are not both the start"
    a, b = load_checkpoint(whole / CHECKPOINT), load_checkpoint(broken / CHECKPOINT)
    if privacy is not None:
        assert a.strategy[0]["clipping_norm"] == pytest.approx(b.strategy[0]["clipping_norm"])
    for ours, theirs in zip(a.rounds, b.rounds, strict=True):
        assert ours == pytest.approx(theirs), "and the same metrics every round"
    assert torch.equal(a.random["numpy"][1], b.random["numpy"][1])


def test_a_checkpoint_of_another_run_is_refused_not_resumed(tmp_path):
    """A hub whose database was reset numbers its runs from 1 again, in the same folders:
    run 1 of another project's task must not go on from the old run 1's checkpoint (its
    weights, rounds and best model), whatever the architecture."""
    from flwr.app import ArrayRecord, Context, RecordDict

    from flip.fl.checkpoint import Checkpoint, save
    from flip.fl.server import make_server_app, run_config, run_of
    from flip.fl.tasks import mace_task
    from flip.fl.tasks.models import new_model

    spec = mace_task(scaling="fixed")
    state = {k: torch.ones_like(v) for k, v in new_model(spec).state_dict().items()}
    path = tmp_path / "checkpoint.pt"
    save(path, Checkpoint(2, state, [{}, {}], run=run_of(run_config("old", spec, 1))))
    context = Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config={})
    initial = ArrayRecord(new_model(spec).state_dict())
    for project, resumes in (("new", False), ("old", True)):
        app, result = make_server_app(
            run_config(project, spec, 1),
            initial,
            rounds=2,
            n_sites=1,
            checkpoint=path,
            evaluate_final=False,
        )
        if not resumes:
            with pytest.raises(ValueError, match="of another run"):
                app._main(None, context)
            continue
        app._main(None, context)
        assert all(torch.equal(result.state_dict[k], state[k]) for k in state), "its own run"
