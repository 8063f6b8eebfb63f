"""A binary outcome's model helpers: loading arrays, training, predicted probabilities, metrics.

The training loop and the metrics serve every outcome (`training`, `outcomes`); this
module keeps the binary defaults every caller of a one-logit classifier uses.
"""

from __future__ import annotations

import numpy as np
import torch

from flip.data.features.tabular import TabularData
from flip.fl.tasks.outcomes import auroc, average_ranks, metrics_of
from flip.fl.tasks.training import train

__all__ = ["auroc", "average_ranks", "evaluate", "load_arrays", "metrics_of", "predict", "train"]


def load_arrays(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    """Load parameters into `model`, by name, or in order when a strategy dropped the names."""
    own = model.state_dict()
    if set(state) != set(own):
        if len(state) != len(own):
            raise ValueError(f"expected {len(own)} parameter arrays, got {len(state)}")
        state = dict(zip(own, state.values(), strict=True))
    model.load_state_dict({k: torch.as_tensor(v).reshape(own[k].shape) for k, v in state.items()})
    return model


def predict(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    """Predicted probabilities of the outcome."""
    model.eval()
    with torch.no_grad():
        return torch.sigmoid(model(torch.from_numpy(x))).squeeze(1).numpy()


def evaluate(model: torch.nn.Module, data: TabularData) -> dict[str, float]:
    """AUROC, accuracy at 0.5, log loss and the number of test examples."""
    return metrics_of(predict(model, data.x), data.y)
