"""How a dermatology model trains and predicts on one site's rows: the same loop for the
federated sites (the ClientApp), each site alone and the pooled reference (the demo)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from flip.fl.tasks.dermatology import Adaptable


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
    """What a model reads and how it trains: AdamW whose learning rate decays from
    `learning_rate` along a half cosine over the `rounds` x `local_epochs` epochs of training
    (`epoch_rate`), the same schedule for a federated site, a site alone and the pooled model."""

    task: str  # "biomarker" (regression of PASI / 10) or "response" (binary)
    n_features: int
    n_text: int
    image: bool
    seed: int
    learning_rate: float = 2e-3
    batch_size: int = 8
    local_epochs: int = 2
    weight_decay: float = 1e-4
    rounds: int = 1


def epoch_rate(recipe: Recipe, epoch: int) -> float:
    """The learning rate of epoch `epoch` (from 0) of the recipe's rounds x local epochs."""
    total = recipe.rounds * recipe.local_epochs
    return recipe.learning_rate * 0.5 * (1.0 + math.cos(math.pi * min(epoch, total) / total))


def _tensors(split: Split) -> tuple[torch.Tensor, ...]:
    return tuple(torch.from_numpy(np.ascontiguousarray(getattr(split, f))) for f in Split.FIELDS)


def _loss(recipe: Recipe, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if recipe.task == "biomarker":
        return torch.nn.functional.smooth_l1_loss(output, y / 10.0)
    return torch.nn.functional.binary_cross_entropy_with_logits(output, y)


def fit(
    model: Adaptable, recipe: Recipe, data: Split, epochs: int, seed: int, first_epoch: int = 0
) -> None:
    """Train `model`'s trainable parameters in place for `epochs` passes over `data` (AdamW,
    shuffled by `seed`), the first being epoch `first_epoch` of the recipe's schedule
    (`epoch_rate`); a frozen pretrained encoder stays as it is."""
    if len(data) == 0:
        return
    features, text, images, y = _tensors(data)
    optimiser = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=recipe.learning_rate,
        weight_decay=recipe.weight_decay,
    )
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for epoch in range(first_epoch, first_epoch + epochs):
        for group in optimiser.param_groups:
            group["lr"] = epoch_rate(recipe, epoch)
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(y), recipe.batch_size):
            rows = order[start : start + recipe.batch_size]
            optimiser.zero_grad()
            loss = _loss(recipe, model(features[rows], text[rows], images[rows]), y[rows])
            loss.backward()
            optimiser.step()


@torch.no_grad()
def predict(model: Adaptable, recipe: Recipe, data: Split) -> np.ndarray:
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
