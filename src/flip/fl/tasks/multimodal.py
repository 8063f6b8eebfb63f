"""`multimodal`: late fusion of a model of the coded features and a model of the notes.

Each modality has its own logistic model and gives its own logit; a learned
weighted sum of the two logits is the prediction. Trained end to end, so the
fusion weights say how much each modality contributes.
"""

from __future__ import annotations

import torch


class LateFusion(torch.nn.Module):
    """Logit = w_tab * tabular(features) + w_notes * notes(embedding) + b."""

    def __init__(self, n_features: int, n_text: int) -> None:
        super().__init__()
        self.split = n_features
        self.tabular = torch.nn.Linear(n_features, 1)
        self.notes = torch.nn.Linear(n_text, 1)
        self.fusion = torch.nn.Linear(2, 1)
        with torch.no_grad():
            self.fusion.weight.fill_(1.0)
            self.fusion.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.cat(
            [self.tabular(x[:, : self.split]), self.notes(x[:, self.split :])], dim=1
        )
        return self.fusion(logits)


def new_model(n_features: int, n_text: int, seed: int) -> torch.nn.Module:
    """A late-fusion model whose initial weights depend only on `seed`."""
    torch.manual_seed(seed)
    return LateFusion(n_features, n_text)
