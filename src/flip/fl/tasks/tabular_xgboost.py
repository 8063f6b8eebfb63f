"""`tabular-xgboost`: gradient-boosted trees, federated by Flower's XGBoost bagging.

The global model is an XGBoost booster as JSON bytes. Each round, every site
loads it, boosts `local_rounds` new trees on its own data and sends back only
those trees; Flower's FedXgbBagging appends every site's trees to the global
model. As each site's trees fit the same residuals, their learning rate is
divided by the number of sites, so the appended trees add up to one step.
Under FedXgbCyclic the sites take turns instead: one site a round boosts the
whole model at the full learning rate and sends it all back.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from flip.data.features.tabular import TabularData

if TYPE_CHECKING:
    import xgboost

#: Booster settings shared by every site (part of the task, like a model's shape).
PARAMS = {
    "objective": "binary:logistic",
    "eval_metric": "auc",
    "max_depth": 3,
    "subsample": 0.9,
    "tree_method": "hist",
    "nthread": 1,
}
ETA = 0.3


def _params(seed: int, n_sites: int) -> dict[str, object]:
    return {**PARAMS, "eta": ETA / max(1, n_sites), "seed": seed}


def _xgb() -> ModuleType:
    """XGBoost, imported on first use: with scikit-learn it takes about a second, which
    every ClientApp process of every other task would pay."""
    import xgboost

    return xgboost


def _booster(model: bytes) -> xgboost.Booster | None:
    if not model:
        return None
    booster = _xgb().Booster()
    booster.load_model(bytearray(model))
    return booster


def boost(
    model: bytes, data: TabularData, local_rounds: int, seed: int, n_sites: int, whole: bool = False
) -> bytes:
    """The trees one site adds to `model` (empty bytes: none yet), as booster JSON; with
    `whole` (FedXgbCyclic, where sites take turns), the whole booster with them."""
    matrix = _xgb().DMatrix(data.x, label=data.y)
    previous = _booster(model)
    booster = _xgb().train(
        _params(seed, n_sites), matrix, num_boost_round=local_rounds, xgb_model=previous
    )
    done = booster.num_boosted_rounds()
    if previous is not None and not whole:
        booster = booster[done - local_rounds : done]
    return bytes(booster.save_raw("json"))


def fit(data: TabularData, rounds: int, seed: int) -> bytes:
    """A booster trained on one dataset alone (local-only and pooled baselines)."""
    return boost(b"", data, rounds, seed, 1)


def predict(model: bytes, x: np.ndarray) -> np.ndarray:
    """Predicted probabilities of the outcome (0.5 everywhere for an empty model)."""
    booster = _booster(model)
    if booster is None:
        return np.full(len(x), 0.5)
    return booster.predict(_xgb().DMatrix(x)).astype(np.float64)
