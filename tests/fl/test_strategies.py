"""Every Flower strategy by name, its hyperparameters from the task spec, FedProx's term applied."""

import flwr.serverapp.strategy as flower
import numpy as np
import pytest
import torch
from pydantic import ValidationError

from flip.data.features.tabular import TabularData
from flip.fl.strategies import NAMES, StrategySpec, make_strategy
from flip.fl.tasks import TaskSpec, mace_task, task_hash, training
from flip.fl.tasks.runner import train_task

#: Flower's exports that are not aggregation rules: DP wrappers (privacy.py applies them).
NOT_RULES = {"Result", "Strategy"}


def test_every_flower_strategy_is_offered_by_name():
    rules = {n for n in flower.__all__ if n not in NOT_RULES and "DifferentialPrivacy" not in n}
    offered = {type(make_strategy(name, 7, 0.1)).__name__ for name in NAMES}
    assert offered == rules


@pytest.mark.parametrize(
    "name, options, attribute, value",
    [
        ("fedprox", {"proximal_mu": 0.5}, "proximal_mu", 0.5),
        ("krum", {"num_malicious_nodes": 2}, "num_malicious_nodes", 2),
        ("multikrum", {"num_nodes_to_select": 3}, "num_nodes_to_select", 3),
        ("fedadam", {"eta": 0.02, "beta_1": 0.8}, "eta", 0.02),
        ("fedavgm", {"server_learning_rate": 0.5}, "server_learning_rate", 0.5),
        ("fedtrimmedavg", {"beta": 0.1}, "beta", 0.1),
        ("qfedavg", {"q": 0.3}, "q", 0.3),
    ],
)
def test_hyperparameters_reach_flowers_strategy(name, options, attribute, value):
    strategy = make_strategy(name, 7, 0.1, options=options)
    assert getattr(strategy, attribute) == value
    assert isinstance(getattr(strategy, attribute), type(value))


def test_hyperparameters_are_checked_with_a_reason():
    with pytest.raises(ValidationError, match="fedprox has no 'eta': it takes proximal_mu"):
        StrategySpec(name="fedprox", options={"eta": 0.1})
    with pytest.raises(ValidationError, match="unknown strategy 'fedsgd'"):
        StrategySpec(name="fedsgd")
    with pytest.raises(ValidationError, match="a whole number"):
        StrategySpec(name="krum", options={"num_malicious_nodes": 1.5})
    with pytest.raises(ValueError, match="krum tolerating 2 malicious sites needs at least 7"):
        make_strategy("krum", 5, 0.1, options={"num_malicious_nodes": 2})
    base = mace_task().model_dump()
    with pytest.raises(ValidationError, match="aggregates trees"):
        TaskSpec.model_validate({**base, "strategy": {"name": "fedxgb_bagging"}})
    with pytest.raises(ValidationError, match="secure aggregation runs FedAvg"):
        TaskSpec.model_validate({**base, "secure_aggregation": True, "strategy": {"name": "krum"}})
    prox = TaskSpec.model_validate({**base, "strategy": {"name": "fedprox"}})
    tighter = {**base, "strategy": {"name": "fedprox", "options": {"proximal_mu": 1.0}}}
    assert task_hash(prox) != task_hash(TaskSpec.model_validate(tighter)) != task_hash(mace_task())


def test_the_proximal_term_pulls_each_local_step_back_to_the_global_weights():
    """Full-batch gradient descent on squared error with FedProx's term, step by step in
    numpy: w <- w - lr * (grad of the loss + mu * (w - w_global))."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(50, 3)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5]) + 1.0).astype(np.float32)
    data = TabularData(np.arange(50), x, y, [])
    lr, mu, epochs = 0.05, 2.0, 8
    start = torch.nn.Linear(3, 1)
    w0 = np.concatenate([start.weight.detach().numpy().ravel(), start.bias.detach().numpy()])
    features = np.hstack([x, np.ones((50, 1), np.float32)])
    w = w0.copy()
    for _ in range(epochs):
        residual = features @ w - y
        w = w - lr * (2 / 50 * features.T @ residual + mu * (w - w0))
    moved = {}
    for proximal_mu in (0.0, mu):
        model = torch.nn.Linear(3, 1)
        model.load_state_dict(start.state_dict())
        training.train(
            model,
            data,
            epochs=epochs,
            learning_rate=lr,
            batch_size=50,
            l2=0.0,
            seed=0,
            proximal_mu=proximal_mu,
            outcome="regression",
        )
        weights, bias = model.weight.detach().numpy().ravel(), model.bias.detach().numpy()
        trained = np.concatenate([weights, bias])
        moved[proximal_mu] = np.linalg.norm(trained - w0)
    assert trained == pytest.approx(w, rel=1e-4)
    assert moved[mu] < 0.8 * moved[0.0]


def test_a_site_applies_the_mu_its_approved_task_names():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(200, 20)).astype(np.float32)
    data = TabularData(np.arange(200), x, (x[:, 0] > 0).astype(np.float32), [])
    base = mace_task().model_dump()
    drift = {}
    for options in ({}, {"proximal_mu": 5.0}):
        strategy = {"name": "fedprox", "options": options}
        spec = TaskSpec.model_validate({**base, "strategy": strategy})
        state, _ = train_task(spec, None, data, epochs=5, seed=0)
        drift[options.get("proximal_mu", 0.1)] = float(state["weight"].norm())
    assert drift[5.0] < 0.5 * drift[0.1]  # the start is all zeros: the norm is the update's


def test_flip_fl_run_takes_strategy_hyperparameters_and_checks_them(tmp_path):
    import typer

    from flip.cli.fl import _strategy_options
    from flip.data.features.csvfile import DatasetError
    from flip.fl.experiment import ExperimentOptions

    assert _strategy_options(["proximal_mu=0.5"]) == {"proximal_mu": 0.5}
    with pytest.raises(typer.BadParameter, match="give NAME=NUMBER"):
        _strategy_options(["proximal_mu"])
    site = {"a": tmp_path / "a.csv"}
    ExperimentOptions(site, "y", strategy="fedprox", strategy_options={"proximal_mu": 0.5}).check()
    with pytest.raises(DatasetError, match=r"--strategy-option: .*fedavgm has no 'mu'"):
        ExperimentOptions(site, "y", strategy="fedavgm", strategy_options={"mu": 1.0}).check()


def test_flip_fl_run_refuses_a_robust_rule_its_sites_cannot_hold_before_it_starts(tmp_path):
    """Krum tolerating 5 malicious sites needs 13: over two CSV sites `flip fl run` says so
    in its checks, not from inside Flower's simulation engine after Ray has started."""
    from flip.data.features.csvfile import DatasetError
    from flip.fl.experiment import ExperimentOptions

    sites = {"a": tmp_path / "a.csv", "b": tmp_path / "b.csv"}
    krum = {"num_malicious_nodes": 5.0}
    with pytest.raises(DatasetError, match="needs at least 13 sites, not 2"):
        ExperimentOptions(sites, "y", strategy="krum", strategy_options=krum).check()
    with pytest.raises(DatasetError, match="selects between 1 and 2 sites"):
        options = {"num_nodes_to_select": 3.0}
        ExperimentOptions(sites, "y", strategy="multikrum", strategy_options=options).check()
    ExperimentOptions(sites, "y", strategy="krum").check()


@pytest.mark.parametrize(
    ("name", "options", "why"),
    [
        ("fedadam", {"beta_1": 1.0}, "decay in \\[0, 1\\)"),
        ("fedyogi", {"beta_2": 1.5}, "decay in \\[0, 1\\)"),
        ("fedadam", {"tau": 0.0}, "tau in \\(0, 1\\]"),
        ("fedadagrad", {"eta": 0.0}, "server learning rate"),
        ("fedavgm", {"server_learning_rate": 1e308}, "server learning rate"),
        ("fedavgm", {"server_momentum": 1.0}, "momentum"),
        ("qfedavg", {"client_learning_rate": 0.0}, "divides by it"),
        ("fedtrimmedavg", {"beta": 0.5}, "leaves nothing"),
        ("krum", {"num_malicious_nodes": 1e18}, "more than 1000 sites"),
        ("bulyan", {"num_malicious_nodes": 250}, "more than 1000 sites"),
    ],
)
def test_a_spec_out_of_a_strategys_bounds_is_refused_before_any_site_approves_it(
    name, options, why
):
    with pytest.raises(ValidationError, match=why):
        TaskSpec.model_validate(
            {**mace_task().model_dump(), "strategy": {"name": name, "options": options}}
        )


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("fedadam", {"beta_1": 0.0, "tau": 1.0, "eta": 10.0}),
        ("fedtrimmedavg", {"beta": 0.49}),
        ("bulyan", {"num_malicious_nodes": 249}),
        ("qfedavg", {"client_learning_rate": 0.01, "q": 10.0}),
    ],
)
def test_options_on_the_bounds_are_accepted(name, options):
    assert StrategySpec(name=name, options=options).options == options


def test_flip_fl_run_takes_no_more_rounds_or_epochs_than_a_task_may_name(tmp_path):
    """--local-epochs 100000 (a typo for 10) ran for hours; a task spec caps both."""
    from flip.data.features.csvfile import DatasetError
    from flip.fl.experiment import ExperimentOptions

    sites = {"a": tmp_path / "a.csv"}
    for too_many in ({"local_epochs": 100_000}, {"rounds": 10**6}):
        with pytest.raises(DatasetError, match="at most"):
            ExperimentOptions(sites, "y", **too_many).check()
    ExperimentOptions(sites, "y", rounds=100_000, local_epochs=10_000).check()
