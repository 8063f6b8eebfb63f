"""Training the dermatology models three ways on the same splits: each site alone, federated
(FedAvg of the sites' weights, weighted by their training rows; only weights move), and
pooled (every site's training rows in one place, possible only because the data are
synthetic). Each is tested on every site's own test split."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from flip.fl.tasks.dermatology import Fusion, new_model


@dataclass
class Split:
    """One site's rows for one model: features, text embedding, images, label."""

    features: np.ndarray
    text: np.ndarray
    images: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    def take(self, rows: np.ndarray) -> Split:
        """The rows `rows` of this split."""
        return Split(self.features[rows], self.text[rows], self.images[rows], self.y[rows])

    @staticmethod
    def join(parts: list[Split]) -> Split:
        """The rows of every part, in order."""
        return Split(*(np.concatenate([getattr(p, f) for p in parts]) for f in Split.FIELDS))

    FIELDS = ("features", "text", "images", "y")


@dataclass(frozen=True)
class Recipe:
    """What a model reads and how it trains."""

    task: str  # "biomarker" (regression of PASI / 10) or "response" (binary)
    n_features: int
    n_text: int
    image: bool
    seed: int
    learning_rate: float = 2e-3
    batch_size: int = 16
    local_epochs: int = 2
    weight_decay: float = 1e-4


def _tensors(split: Split) -> tuple[torch.Tensor, ...]:
    return tuple(torch.from_numpy(np.ascontiguousarray(getattr(split, f))) for f in Split.FIELDS)


def _loss(recipe: Recipe, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if recipe.task == "biomarker":
        return torch.nn.functional.smooth_l1_loss(output, y / 10.0)
    return torch.nn.functional.binary_cross_entropy_with_logits(output, y)


def fit(model: Fusion, recipe: Recipe, data: Split, epochs: int, seed: int) -> None:
    """Train `model` in place for `epochs` passes over `data` (Adam, shuffled by `seed`)."""
    if len(data) == 0:
        return
    features, text, images, y = _tensors(data)
    optimiser = torch.optim.AdamW(
        model.parameters(), lr=recipe.learning_rate, weight_decay=recipe.weight_decay
    )
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(y), recipe.batch_size):
            rows = order[start : start + recipe.batch_size]
            optimiser.zero_grad()
            loss = _loss(recipe, model(features[rows], text[rows], images[rows]), y[rows])
            loss.backward()
            optimiser.step()


@torch.no_grad()
def predict(model: Fusion, recipe: Recipe, data: Split) -> np.ndarray:
    """PASI (biomarker) or the probability of PASI75 (response) for each row."""
    model.eval()
    features, text, images, _ = _tensors(data)
    out = torch.cat(
        [
            model(features[s : s + 64], text[s : s + 64], images[s : s + 64])
            for s in range(0, max(len(data), 1), 64)
        ]
        if len(data)
        else [torch.zeros(0)]
    )
    return (
        (out * 10.0).clamp(min=0).numpy() if recipe.task == "biomarker" else out.sigmoid().numpy()
    )


def _fresh(recipe: Recipe) -> Fusion:
    return new_model(recipe.n_features, recipe.n_text, recipe.image, recipe.seed)


def local_only(recipe: Recipe, trains: dict[str, Split], rounds: int) -> dict[str, Fusion]:
    """Each site's own model, trained as long as the federation trains (rounds x epochs)."""
    models = {}
    for name, train in trains.items():
        models[name] = _fresh(recipe)
        fit(models[name], recipe, train, rounds * recipe.local_epochs, recipe.seed)
    return models


def pooled(recipe: Recipe, trains: dict[str, Split], rounds: int) -> Fusion:
    """One model on every site's training rows together."""
    model = _fresh(recipe)
    fit(model, recipe, Split.join(list(trains.values())), rounds * recipe.local_epochs, recipe.seed)
    return model


def federated(
    recipe: Recipe,
    trains: dict[str, Split],
    rounds: int,
    may_read: Callable[[str], bool],
    on_round: Callable[[int, Fusion, int], None] | None = None,
) -> Fusion:
    """FedAvg: each round every site starts from the global weights, trains its local epochs
    on its own rows and returns only its weights; the global model is their average weighted
    by training rows. A site whose `may_read(site)` is False (no approval) takes no part.
    `on_round(number, global model, bytes one site sent)` follows each round."""
    joined = {name: t for name, t in trains.items() if may_read(name) and len(t)}
    if not joined:
        raise ValueError("no site approved the task and holds training rows")
    model = _fresh(recipe)
    for number in range(1, rounds + 1):
        start = {k: v.clone() for k, v in model.state_dict().items()}
        total, summed, sent = 0, None, 0
        for offset, train in enumerate(joined.values()):
            model.load_state_dict(start)
            fit(
                model, recipe, train, recipe.local_epochs, recipe.seed * 1000 + number * 31 + offset
            )
            update = model.state_dict()
            sent = sum(t.numel() * t.element_size() for t in update.values())
            weight = len(train)
            total += weight
            summed = (
                {k: v * weight for k, v in update.items()}
                if summed is None
                else {k: summed[k] + v * weight for k, v in update.items()}
            )
        model.load_state_dict({k: v / total for k, v in summed.items()})
        if on_round is not None:
            on_round(number, model, sent)
    return model
