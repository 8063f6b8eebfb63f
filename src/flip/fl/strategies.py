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

#: The most sites one run takes: it bounds the node counts a spec may name.
MAX_SITES = 1000

#: hyperparameter -> (lowest, highest, whether the lowest is allowed, whether the highest
#: is, why): a spec out of these bounds would fail or blow up at the server, so no site
#: should approve it.
_BOUNDS: dict[str, tuple[float, float, bool, bool, str]] = {
    "beta_1": (0, 1, True, False, "a moment's decay in [0, 1), or the moment never settles"),
    "beta_2": (0, 1, True, False, "a moment's decay in [0, 1), or the moment never settles"),
    "eta": (0, 10, False, True, "a server learning rate is positive and at most 10"),
    "eta_l": (0, 10, False, True, "a site learning rate is positive and at most 10"),
    "tau": (0, 1, False, True, "the update divides by sqrt(v) + tau: tau in (0, 1]"),
    "server_learning_rate": (0, 10, False, True, "a server learning rate in (0, 10]"),
    "server_momentum": (0, 1, True, False, "momentum in [0, 1), or the update diverges"),
    "proximal_mu": (0, 1000, True, True, "a proximal weight in [0, 1000]"),
    "beta": (0, 0.5, True, False, "trimming half or more from each end leaves nothing"),
    "client_learning_rate": (0, 10, False, True, "qFedAvg divides by it: in (0, 10]"),
    "q": (0, 10, True, True, "qFedAvg raises losses to q: in [0, 10], or they overflow"),
    "num_nodes_to_select": (1, MAX_SITES, True, True, f"selects 1 to {MAX_SITES} sites"),
    "num_malicious_nodes": (0, MAX_SITES, True, True, f"at most {MAX_SITES} sites"),
}

#: The most malicious sites f a robust rule tolerates among MAX_SITES (Krum needs 2f + 3
#: sites, Bulyan 4f + 3).
_MOST_MALICIOUS = {
    "krum": (MAX_SITES - 3) // 2,
    "multikrum": (MAX_SITES - 3) // 2,
    "bulyan": (MAX_SITES - 3) // 4,
}


def _bounds_problem(name: str, key: str, value: float) -> str | None:
    """Why `value` is out of bounds for hyperparameter `key` of strategy `name`, or None."""
    low, high, low_in, high_in, why = _BOUNDS[key]
    if key == "num_malicious_nodes":
        high = _MOST_MALICIOUS[name]
        why = f"{name} needs more than {MAX_SITES} sites to tolerate more than {high}"
    below = value < low or (value == low and not low_in)
    above = value > high or (value == high and not high_in)
    return f"strategy {name}: {key}={value:g} is out of bounds ({why})" if below or above else None


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
            if problem := _bounds_problem(self.name, key, value):
                raise ValueError(problem)
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
    cls, extra = _configured(name, n_sites, learning_rate, options)
    if min_sites is not None and not 1 <= min_sites <= n_sites:
        raise ValueError(f"the minimum number of sites must be between 1 and {n_sites}")
    need = min_sites or n_sites
    if problem := _robust_problem(name, extra, need):
        raise ValueError(problem)
    nodes = {"min_available_nodes": need}
    if name != "fedxgb_cyclic":
        nodes |= {"min_train_nodes": need, "min_evaluate_nodes": need}
    return cls(fraction_train=1.0, fraction_evaluate=1.0, **nodes, **extra, **callbacks)


def _configured(
    name: str, n_sites: int, learning_rate: float, options: dict[str, float] | None
) -> tuple[type[Strategy], dict]:
    """Strategy `name`'s Flower class and its keyword arguments: FLIP's defaults for
    `n_sites` sites, overridden by `options` (validated as a `StrategySpec`)."""
    spec = StrategySpec(name=name, options=options or {})
    cls, extra = _STRATEGIES[name](n_sites, learning_rate)
    extra |= {k: int(v) if k in _COUNTS else v for k, v in spec.options.items()}
    return cls, extra


def sites_problem(name: str, options: dict[str, float] | None, n_sites: int) -> str | None:
    """Why strategy `name` with `options` cannot run over `n_sites` sites (a robust rule
    tolerating more malicious sites than that many allow), in one line, or None."""
    return _robust_problem(name, _configured(name, n_sites, 0.1, options)[1], n_sites)


def _robust_problem(name: str, extra: dict, n: int) -> str | None:
    """Why a Byzantine-robust rule lacks the sites for the number it tolerates, or None."""
    f = int(extra.get("num_malicious_nodes", 0))
    need = {"krum": 2 * f + 3, "multikrum": 2 * f + 3, "bulyan": 4 * f + 3}.get(name)
    if name != "bulyan" and f == 0:
        need = None
    if need is not None and n < need:
        return f"{name} tolerating {f} malicious sites needs at least {need} sites, not {n}"
    if name == "multikrum" and not 1 <= int(extra["num_nodes_to_select"]) <= n:
        return f"multikrum selects between 1 and {n} sites"
    return None
