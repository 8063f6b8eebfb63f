"""Strategies by name: Flower's own implementations, configured, never rewritten.

Every strategy of `flwr.serverapp.strategy` that aggregates model updates is here
(the differential-privacy wrappers are applied by `privacy`). A task names its
strategy and hyperparameters in `StrategySpec`, so a site approves them with the task.
"""

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
    FedXgbCyclic,
    FedYogi,
    Krum,
    MultiKrum,
    QFedAvg,
    Strategy,
)
from pydantic import BaseModel, ConfigDict, Field, model_validator

#: name -> (Flower class, default hyperparameters); `n` is the number of sites, `lr` the
#: sites' learning rate.
_STRATEGIES: dict[str, Callable[[int, float], tuple[type[Strategy], dict]]] = {
    "fedavg": lambda n, lr: (FedAvg, {}),
    "fedprox": lambda n, lr: (FedProx, {"proximal_mu": 0.1}),
    "fedadam": lambda n, lr: (
        FedAdam,
        {"eta": 0.05, "eta_l": lr, "beta_1": 0.9, "beta_2": 0.99, "tau": 1e-3},
    ),
    "fedyogi": lambda n, lr: (
        FedYogi,
        {"eta": 0.05, "eta_l": lr, "beta_1": 0.9, "beta_2": 0.99, "tau": 1e-3},
    ),
    "fedadagrad": lambda n, lr: (FedAdagrad, {"eta": 0.1, "eta_l": lr, "tau": 1e-3}),
    "fedavgm": lambda n, lr: (FedAvgM, {"server_learning_rate": 1.0, "server_momentum": 0.7}),
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
    "fedxgb_cyclic": lambda n, lr: (FedXgbCyclic, {}),
}

#: Strategies for tree models (tabular-xgboost) rather than weight vectors.
TREE_STRATEGIES = ("fedxgb_bagging", "fedxgb_cyclic")

NAMES = tuple(_STRATEGIES)

#: Hyperparameters that count nodes (integers); every other one is a real number.
_COUNTS = ("num_malicious_nodes", "num_nodes_to_select")


def hyperparameters(name: str) -> tuple[str, ...]:
    """The hyperparameters strategy `name` takes (Flower's keyword names)."""
    if name not in _STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}: choose one of {', '.join(NAMES)}")
    return tuple(_STRATEGIES[name](2, 0.1)[1])


class StrategySpec(BaseModel):
    """A Flower strategy by name and the hyperparameters that differ from FLIP's defaults
    (e.g. FedProx `proximal_mu`, Krum `num_malicious_nodes`, FedAdam `eta`)."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    name: str = Field("fedavg", description=f"One of {', '.join(NAMES)}.")
    options: dict[str, float] = Field(
        default_factory=dict, description="Hyperparameter -> value, by Flower's keyword name."
    )

    @model_validator(mode="after")
    def _known_hyperparameters(self) -> StrategySpec:
        allowed = hyperparameters(self.name)
        for key, value in self.options.items():
            if key not in allowed:
                takes = ", ".join(allowed) or "no hyperparameters"
                raise ValueError(f"strategy {self.name} has no {key!r}: it takes {takes}")
            if value < 0:
                raise ValueError(f"strategy {self.name}: {key} must not be negative")
            if key in _COUNTS and value != int(value):
                raise ValueError(f"strategy {self.name}: {key} counts sites: a whole number")
        return self

    @property
    def proximal_mu(self) -> float:
        """FedProx's proximal weight, which every site applies in its local loss (else 0)."""
        return float(self.options.get("proximal_mu", 0.1)) if self.name == "fedprox" else 0.0


def make_strategy(
    name: str,
    n_sites: int,
    learning_rate: float,
    min_sites: int | None = None,
    options: dict[str, float] | None = None,
    **callbacks,
) -> Strategy:
    """A Flower strategy that samples every connected site each round, once at least
    `min_sites` (default all `n_sites`) are connected, with its hyperparameters overridden
    by `options`; `callbacks` go to its constructor."""
    spec = StrategySpec(name=name, options=options or {})
    cls, extra = _STRATEGIES[name](n_sites, learning_rate)
    extra |= {k: int(v) if k in _COUNTS else v for k, v in spec.options.items()}
    if min_sites is not None and not 1 <= min_sites <= n_sites:
        raise ValueError(f"the minimum number of sites must be between 1 and {n_sites}")
    need = min_sites or n_sites
    _check_robust(name, extra, need)
    nodes = {"min_available_nodes": need}
    if name != "fedxgb_cyclic":
        nodes |= {"min_train_nodes": need, "min_evaluate_nodes": need}
    return cls(fraction_train=1.0, fraction_evaluate=1.0, **nodes, **extra, **callbacks)


def _check_robust(name: str, extra: dict, n: int) -> None:
    """Byzantine-robust rules need enough sites for the number they tolerate."""
    f = int(extra.get("num_malicious_nodes", 0))
    need = {"krum": 2 * f + 3, "multikrum": 2 * f + 3, "bulyan": 4 * f + 3}.get(name)
    if name != "bulyan" and f == 0:
        need = None
    if need is not None and n < need:
        raise ValueError(f"{name} tolerating {f} malicious sites needs at least {need} sites")
    if name == "multikrum" and not 1 <= int(extra["num_nodes_to_select"]) <= n:
        raise ValueError(f"multikrum selects between 1 and {n} sites")
