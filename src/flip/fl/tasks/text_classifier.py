"""`text-classifier`: a logistic model over the note embedding alone.

The dataset's columns are the task's features, then the note embedding (then
any image); this model reads only the embedding, so it learns from what
clinicians wrote.
"""

from __future__ import annotations

import torch

from flip.fl.tasks.seeding import seed_weights


class NoteClassifier(torch.nn.Module):
    """`n_outputs` logits from the `n_text` columns of the note embedding, after `n_features`."""

    def __init__(self, n_features: int, n_text: int, n_outputs: int = 1) -> None:
        super().__init__()
        self.start, self.stop = n_features, n_features + n_text
        self.notes = torch.nn.Linear(n_text, n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.notes(x[:, self.start : self.stop])


def new_model(n_features: int, n_text: int, seed: int, n_outputs: int = 1) -> torch.nn.Module:
    """A note classifier whose initial weights depend only on `seed`."""
    seed_weights(seed)
    return NoteClassifier(n_features, n_text, n_outputs)
