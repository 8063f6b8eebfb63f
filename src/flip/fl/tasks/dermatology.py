"""The dermatology models: a photograph network, fused late with baseline features and the
baseline letter's text model.

The photograph network is MONAI's ResNet (`skin_network`, group norm, so averaging sites'
weights needs no batch statistics), started from random weights or from a site's registered
pretrained copy (`start_image`); it trains whole and travels. `Fusion` gives each modality
its own output and sums them with learned weights: the biomarker (PASI from the photograph,
with the skin type) and the response (PASI75 at week 16, from features, letter and
photograph). The letter's branch is the pretrained MiniLM encoder fine-tuned with LoRA
(`flip.fl.tasks.adapters`: its weights stay frozen at each site; only the adapters, heads and
fusion train and travel), or, without the packaged MiniLM, a linear model over hashed words.
"""

from __future__ import annotations

from pathlib import Path

import torch

from flip.data.features.adapter import AdapterSpec
from flip.fl.tasks.adapters import Adapted, load_image_base, tuned_text
from flip.fl.tasks.seeding import seed_weights

#: The photograph network: MONAI's ResNet in the ResNet-10 layout (one basic block per stage,
#: a 7x7 stride-2 stem and max pooling, so a 224 x 224 photograph reaches its first stage at
#: 56 x 56) at a quarter of the standard widths (16-128 channels, not 64-512): 0.3 M
#: parameters, which three arms train on CPU within --size small's budget.
SKIN_RESNET = {"block": "basic", "layers": [1, 1, 1, 1], "block_inplanes": [16, 32, 64, 128]}
#: Group norm in 8 groups: averaging sites' weights needs no batch statistics.
NORM_GROUPS = 8


def skin_network() -> torch.nn.Module:
    """A fresh photograph network (RGB in, SKIN_RESNET's last width of pooled features out),
    every normalisation a group norm: MONAI's ResNet puts batch norms in its blocks whatever
    `norm` says, and their running statistics are buffers that would never travel."""
    from monai.networks.nets import ResNet  # 0.7 s to import: built only with the model

    network = ResNet(
        **SKIN_RESNET,
        spatial_dims=2,
        n_input_channels=3,
        conv1_t_size=7,
        conv1_t_stride=2,
        feed_forward=False,
        norm=("group", {"num_groups": NORM_GROUPS}),
    )
    _group_norms(network)
    return network


def _group_norms(module: torch.nn.Module) -> None:
    """Replace every batch norm under `module` by a group norm of as many channels."""
    for name, child in module.named_children():
        if isinstance(child, torch.nn.modules.batchnorm._BatchNorm):
            setattr(module, name, torch.nn.GroupNorm(NORM_GROUPS, child.num_features))
        else:
            _group_norms(child)


def start_image(model: Adaptable, path: Path, sha256: str) -> None:
    """Start `model`'s photograph network from a torch state dict of SKIN_RESNET at `path` (a
    site's copy) once its bytes hash to `sha256`; a classifier `fc` in it is not used."""
    if model.model.image is None:
        raise ValueError("the model has no photograph network to start from pretrained weights")
    load_image_base(model.model.image, path, sha256, head="fc")


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
        self.image = skin_network() if image else None
        self.image_head = torch.nn.Linear(SKIN_RESNET["block_inplanes"][-1], 1) if image else None
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
