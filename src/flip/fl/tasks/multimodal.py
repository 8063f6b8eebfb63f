"""`multimodal`: late fusion of one model per modality the task's data has.

The coded features get a logistic model; notes (if the task has them) another;
an image (if it has one) the `image-cnn` network (the task's `image_network`). Each
gives its own logit, and a learned weighted sum of the logits is the prediction.
Trained end to end, so the fusion weights say how much each modality contributes.
"""

from __future__ import annotations

import torch

from flip.fl.tasks.image_cnn import ImageCNN
from flip.fl.tasks.seeding import seed_weights
from flip.fl.tasks.text_classifier import NoteClassifier


class _Features(torch.nn.Module):
    def __init__(self, n_features: int, n_outputs: int) -> None:
        super().__init__()
        self.n = n_features
        self.linear = torch.nn.Linear(n_features, n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x[:, : self.n])


class LateFusion(torch.nn.Module):
    """Logit = sum over modalities of w_m * model_m(x) + b (for each output)."""

    def __init__(
        self,
        n_features: int,
        n_text: int,
        image_size: int,
        n_outputs: int = 1,
        channels: int = 1,
        network: str = "small-cnn",
        depth: int | None = None,
    ) -> None:
        super().__init__()
        self.tabular = _Features(n_features, n_outputs)
        self.notes = NoteClassifier(n_features, n_text, n_outputs) if n_text else None
        self.image = (
            ImageCNN(n_features + n_text, image_size, n_outputs, channels, network, depth)
            if image_size
            else None
        )
        branches = 1 + (n_text > 0) + (image_size > 0)
        self.fusion = torch.nn.Linear(branches, 1)
        with torch.no_grad():
            self.fusion.weight.fill_(1.0)
            self.fusion.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [m for m in (self.tabular, self.notes, self.image) if m is not None]
        return self.fusion(torch.stack([m(x) for m in branches], dim=2)).squeeze(2)


def new_model(
    n_features: int,
    n_text: int,
    image_size: int,
    seed: int,
    n_outputs: int = 1,
    channels: int = 1,
    network: str = "small-cnn",
    depth: int | None = None,
) -> torch.nn.Module:
    """A late-fusion model whose initial weights depend only on `seed`."""
    seed_weights(seed)
    return LateFusion(n_features, n_text, image_size, n_outputs, channels, network, depth)
