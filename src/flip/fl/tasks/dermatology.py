"""The dermatology models: a photograph network, fused late with baseline features and the
baseline letter's text model.

`SkinNet` is a small convolutional network over an RGB photograph (group norm, so averaging
sites' weights needs no batch statistics). `Fusion` gives each modality its own output and
sums them with learned weights: the biomarker (PASI from the photograph, with the skin
type) and the response (PASI75 at week 16, from features, letter and photograph). The
letter's branch is the pretrained MiniLM encoder fine-tuned with LoRA (`flip.fl.tasks.
adapters`: its weights stay frozen at each site; only the adapters, heads and fusion train
and travel), or, without the packaged MiniLM, a linear model over hashed words.
"""

from __future__ import annotations

from pathlib import Path

import torch

from flip.data.features.adapter import AdapterSpec
from flip.fl.tasks.adapters import Adapted, tuned_text
from flip.fl.tasks.seeding import seed_weights


class SkinNet(torch.nn.Module):
    """Four strided 3x3 convolutions, global mean and max pooling: `width * 2` features."""

    def __init__(self, width: int = 24) -> None:
        super().__init__()
        layers: list[torch.nn.Module] = []
        channels = 3
        for out in (width // 2, width, width, width):
            layers += [
                torch.nn.Conv2d(channels, out, 3, stride=2, padding=1),
                torch.nn.GroupNorm(4, out),
                torch.nn.ReLU(),
            ]
            channels = out
        self.body = torch.nn.Sequential(*layers)
        self.width = width * 2

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        maps = self.body(image)
        return torch.cat([maps.mean((2, 3)), maps.amax((2, 3))], dim=1)


class Fusion(torch.nn.Module):
    """Output = sum over modalities of w_m * head_m(modality) + b.

    With `text_adapter`, the text input is `n_text` MiniLM token ids per letter and its branch
    is MiniLM with LoRA (its encoder loaded from `text_base`, a site's hash-checked copy);
    otherwise the text input is an embedding of `n_text` values and its branch is linear.
    """

    def __init__(
        self,
        n_features: int,
        n_text: int,
        image: bool,
        width: int = 24,
        text_adapter: AdapterSpec | None = None,
        text_base: Path | None = None,
    ) -> None:
        super().__init__()
        self.features = torch.nn.Linear(n_features, 1) if n_features else None
        self.text: torch.nn.Module | None = None
        if n_text and text_adapter is not None:
            self.text = tuned_text(0, n_text, 1, text_adapter, text_base)
        elif n_text:
            self.text = torch.nn.Linear(n_text, 1)
        self.image = SkinNet(width) if image else None
        self.image_head = torch.nn.Linear(self.image.width, 1) if image else None
        branches = sum(m is not None for m in (self.features, self.text, self.image))
        self.fusion = torch.nn.Linear(branches, 1)
        with torch.no_grad():
            self.fusion.weight.fill_(1.0)
            self.fusion.bias.zero_()

    def forward(
        self, features: torch.Tensor, text: torch.Tensor, image: torch.Tensor
    ) -> torch.Tensor:
        outputs = []
        if self.features is not None:
            outputs.append(self.features(features))
        if self.text is not None:
            outputs.append(self.text(text))
        if self.image is not None:
            outputs.append(self.image_head(self.image(image)))
        return self.fusion(torch.cat(outputs, dim=1)).squeeze(1)


class Adaptable(Adapted):
    """A `Fusion` whose state dict (what a site sends and receives) holds only the arrays that
    train: everything but a LoRA-adapted encoder's frozen weights."""

    def forward(
        self, features: torch.Tensor, text: torch.Tensor, image: torch.Tensor
    ) -> torch.Tensor:
        return self.model(features, text, image)


def new_model(
    n_features: int,
    n_text: int,
    image: bool,
    seed: int,
    text_adapter: AdapterSpec | None = None,
    text_base: Path | None = None,
) -> Adaptable:
    """A fusion model whose trainable weights start from `seed` alone (the same at every site
    and at the server, with or without the pretrained encoder's weights at `text_base`)."""
    seed_weights(seed)
    return Adaptable(
        Fusion(n_features, n_text, image, text_adapter=text_adapter, text_base=text_base)
    )
