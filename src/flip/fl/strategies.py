"""Strategies by name: Flower's own implementations, configured, never rewritten."""

from __future__ import annotations

from collections.abc import Callable

from flwr.serverapp.strategy import (
    Bulyan,
    FedAdagrad,
    FedAdam,
    FedAvg,
    FedAvgM,
    FedMedian,
    FedProx,
    FedTrimmedAvg,
    FedXgbBagging,
    FedYogi,
    Krum,
    MultiKrum,
    QFedAvg,
    Strategy,
)

#: name -> (Flower class, extra keyword arguments); `n` is the number of sites.
_STRATEGIES: dict[str, Callable[[int, float], tuple[type[Strategy], dict]]] = {
    "fedavg": lambda n, lr: (FedAvg, {}),
    "fedprox": lambda n, lr: (FedProx, {"proximal_mu": 0.1}),
    "fedadam": lambda n, lr: (FedAdam, {"eta": 0.05, "eta_l": lr}),
    "fedyogi": lambda n, lr: (FedYogi, {"eta": 0.05, "eta_l": lr}),
    "fedadagrad": lambda n, lr: (FedAdagrad, {"eta": 0.1, "eta_l": lr}),
    "fedavgm": lambda n, lr: (FedAvgM, {"server_momentum": 0.7}),
    "fedmedian": lambda n, lr: (FedMedian, {}),
    "fedtrimmedavg": lambda n, lr: (FedTrimmedAvg, {"beta": 0.2}),
    "krum": lambda n, lr: (Krum, {"num_malicious_nodes": 0}),
    "multikrum": lambda n, lr: (
        MultiKrum,
        {"num_malicious_nodes": 0, "num_nodes_to_select": max(1, n - 1)},
    ),
    "bulyan": lambda n, lr: (Bulyan, {"num_malicious_nodes": 0}),
    "qfedavg": lambda n, lr: (QFedAvg, {"client_learning_rate": lr, "q": 0.1}),
    "fedxgb_bagging": lambda n, lr: (FedXgbBagging, {}),
}

#: Strategies for tree models (tabular-xgboost) rather than weight vectors.
TREE_STRATEGIES = ("fedxgb_bagging",)

NAMES = tuple(_STRATEGIES)


def make_strategy(
    name: str, n_sites: int, learning_rate: float, min_sites: int | None = None, **callbacks
) -> Strategy:
    """A Flower strategy that samples every connected site each round, once at least
    `min_sites` (default all `n_sites`) are connected; `callbacks` go to its constructor."""
    if name not in _STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}: choose one of {', '.join(NAMES)}")
    cls, extra = _STRATEGIES[name](n_sites, learning_rate)
    if name == "bulyan" and n_sites < 3:
        raise ValueError("bulyan needs at least 3 sites")
    if min_sites is not None and not 1 <= min_sites <= n_sites:
        raise ValueError(f"the minimum number of sites must be between 1 and {n_sites}")
    need = min_sites or n_sites
    return cls(
        fraction_train=1.0,
        fraction_evaluate=1.0,
        min_train_nodes=need,
        min_evaluate_nodes=need,
        min_available_nodes=need,
        **extra,
        **callbacks,
    )
