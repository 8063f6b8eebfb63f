"""LoRA (peft) on pretrained encoders: the base stays frozen at the site; only the adapters
and the heads train, and only they travel.

The text encoder is all-MiniLM-L6-v2 (a 6-layer BERT, hidden 384) over the note's token ids,
LoRA on its attention query and value projections, mean-pooled into a linear head. The image
encoder is the task's MONAI network, LoRA on every convolution, its classifier layer the
head. The architecture is fixed by the task, so the server builds the same trainable arrays
without the weights; each site loads its own copy of the weights (`flip.data.pretrained`)
before the adapters are added, so their first values depend only on the task's seed.
"""

from __future__ import annotations

import io
import pickle
from collections import OrderedDict
from pathlib import Path

import torch

from flip.data.features.adapter import AdapterSpec
from flip.data.pretrained import PretrainedError, weights_sha256

#: all-MiniLM-L6-v2's architecture (its config.json), so a model builds without its folder.
MINILM = {
    "hidden_size": 384,
    "num_hidden_layers": 6,
    "num_attention_heads": 12,
    "intermediate_size": 1536,
    "vocab_size": 30522,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "pad_token_id": 0,
}
TEXT_TARGETS = ("query", "value")
#: The classifier layer of each image network: trained from fresh, never loaded.
IMAGE_HEADS = {
    "resnet18": "fc",
    "resnet34": "fc",
    "densenet121": "class_layers.out",
    "densenet-small": "class_layers.out",
}


class Adapted(torch.nn.Module):
    """A model whose frozen parts stay at the site: its state dict (what is sent, received
    and aggregated) holds only the parameters that train."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def travelling(self) -> list[str]:
        """The names of the trainable parameters: the adapters, heads and fusion."""
        return [name for name, p in self.named_parameters() if p.requires_grad]

    def state_dict(self, *args, **kwargs):
        """The trainable arrays only (nn.Module's state dict, the frozen base left out)."""
        prefix = kwargs.get("prefix", "")
        keep = {prefix + name for name in self.travelling()}
        full = super().state_dict(*args, **kwargs)
        return OrderedDict((k, v) for k, v in full.items() if k in keep)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Load the trainable arrays, the frozen base kept as it is: an array of the base (or
        any other name) is refused even when not strict; strict: every trainable one too."""
        expected = set(self.travelling())
        extra, missing = set(state_dict) - expected, expected - set(state_dict)
        if extra or (strict and missing):
            raise RuntimeError(
                f"adapter arrays do not match: missing {sorted(missing)[:3]}, "
                f"unexpected {sorted(extra)[:3]}"
            )
        return super().load_state_dict(state_dict, strict=False, assign=assign)

    def train(self, mode: bool = True) -> Adapted:
        """Train mode, with every frozen batch norm kept on its pretrained statistics."""
        super().train(mode)
        for module in self.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and not any(
                p.requires_grad for p in module.parameters()
            ):
                module.eval()
        return self


def add_lora(module: torch.nn.Module, adapter: AdapterSpec, targets: list[str]) -> None:
    """Inject LoRA into `module`'s `targets` in place and freeze all but the adapters; a
    ValueError if the rank makes a target's adapter no smaller than the layer itself."""
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(r=adapter.rank, lora_alpha=adapter.alpha, target_modules=targets)
    inject_adapter_in_model(config, module)
    _check_rank(module, adapter.rank, targets)
    for name, parameter in module.named_parameters():
        parameter.requires_grad_("lora_" in name)


def _check_rank(module: torch.nn.Module, rank: int, targets: list[str]) -> None:
    """Refuse a rank at which some target's LoRA holds as many values as the weight it adapts:
    that is full fine-tuning of the layer (or more) sent as adapters."""
    worst = None
    for name, layer in module.named_modules():
        if not hasattr(layer, "base_layer") or not any(name.endswith(t) for t in targets):
            continue
        weight = layer.base_layer.weight.numel()
        lora = sum(p.numel() for n, p in layer.named_parameters() if "lora_" in n)
        most = -(-weight * rank // lora) - 1  # the largest rank whose adapter is smaller
        if worst is None or most < worst[0]:
            worst = (most, name, weight, lora)
    if worst is not None and worst[0] < rank:
        most, name, weight, lora = worst
        raise ValueError(
            f"LoRA rank {rank} is too large: the adapter of {name} holds {lora:,} values, the "
            f"layer itself {weight:,}, so it would send as much as fine-tuning the layer whole, "
            f"or more; use a rank of {most} at most"
        )


class TunedText(torch.nn.Module):
    """`n_outputs` values from the MiniLM token ids in columns [start, start + n_tokens)."""

    def __init__(self, start: int, n_tokens: int, n_outputs: int) -> None:
        from transformers import BertConfig, BertModel

        super().__init__()
        self.start, self.stop = start, start + n_tokens
        self.encoder = BertModel(BertConfig(**MINILM), add_pooling_layer=False)
        self.head = torch.nn.Linear(MINILM["hidden_size"], n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ids = x[:, self.start : self.stop].long()
        mask = (ids != 0).long()
        hidden = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        weights = mask.unsqueeze(2).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return self.head(pooled)


def tuned_text(
    start: int, n_tokens: int, n_outputs: int, adapter: AdapterSpec, base: Path | None
) -> TunedText:
    """The MiniLM note model with LoRA; its encoder loaded from `base` (a site's copy) if given."""
    model = TunedText(start, n_tokens, n_outputs)
    if base is not None:
        load_text_base(model.encoder, base, adapter.weights.sha256)
    add_lora(model.encoder, adapter, list(TEXT_TARGETS))
    return model


def load_text_base(encoder: torch.nn.Module, path: Path, sha256: str) -> None:
    """Load MiniLM weights (a model folder's model.safetensors, or one .safetensors or torch
    file) into `encoder`, once the path hashes to `sha256`; every encoder array must be there.
    The weights file is read once: the bytes hashed are the bytes loaded."""
    from safetensors import SafetensorError
    from safetensors.torch import load as load_safetensors

    file = path / "model.safetensors" if path.is_dir() else path
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise PretrainedError(f"{file}: cannot read the weights: {exc.strerror or exc}") from exc
    if weights_sha256(path, {file: data}) != sha256:
        raise PretrainedError(f"{path}: the weights are not the task's {sha256}: refused")
    if file.suffix == ".safetensors":
        try:
            state = load_safetensors(data)
        except (RuntimeError, ValueError, SafetensorError) as exc:
            raise PretrainedError(f"{file}: cannot read the encoder's weights: {exc}") from exc
    else:
        state = torch_state(data, file)
    state = {k.removeprefix("bert."): v for k, v in state.items() if not k.startswith("pooler.")}
    _load_all(encoder, state, file, optional=("embeddings.position_ids",))


def image_targets(network: torch.nn.Module, head: str) -> list[str]:
    """The names of the network's convolutions (LoRA's targets), its head left out."""
    return [
        name
        for name, m in network.named_modules()
        if isinstance(m, torch.nn.Conv2d) and not name.startswith(head)
    ]


def tune_image(
    network: torch.nn.Module, kind: str, adapter: AdapterSpec, base: Path | None
) -> torch.nn.Module:
    """`network` (a MONAI ResNet/DenseNet) with LoRA on its convolutions and a trainable head;
    the rest loaded from `base` (a torch state dict of the network; its head is not used)."""
    head = IMAGE_HEADS[kind]
    if base is not None:
        load_image_base(network, base, adapter.weights.sha256, head)
    add_lora(network, adapter, image_targets(network, head))
    network.get_submodule(head).requires_grad_(True)
    return network


def load_image_base(network: torch.nn.Module, path: Path, sha256: str, head: str) -> None:
    """Load a torch state dict file into `network` (all but its head) once it hashes to
    `sha256`; the bytes checked are the bytes loaded."""
    import hashlib

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PretrainedError(f"{path}: cannot read the weights: {exc.strerror or exc}") from exc
    if hashlib.sha256(data).hexdigest() != sha256:
        raise PretrainedError(f"{path}: the weights are not the task's {sha256}: refused")
    state = torch_state(data, path)
    state = {k: v for k, v in state.items() if not k.startswith(head + ".")}
    _load_all(network, state, path, skip=head + ".")


def torch_state(data: bytes, path: Path) -> dict[str, torch.Tensor]:
    """The state dict a torch file's bytes hold, unpickled with weights_only (no code runs);
    a PretrainedError naming `path` if they hold anything else."""
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (RuntimeError, ValueError, TypeError, EOFError, pickle.UnpicklingError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PretrainedError(f"{path}: not a torch state dict: {reason}") from exc
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise PretrainedError(f"{path}: not a torch state dict (names to tensors)")
    return state


def _load_all(
    module: torch.nn.Module,
    state: dict[str, torch.Tensor],
    path: Path,
    *,
    optional: tuple[str, ...] = (),
    skip: str | None = None,
) -> None:
    """Load `state` into `module`: every array (but `optional` and those under `skip`) must be
    there and fit, or a PretrainedError says which does not."""
    own = module.state_dict()
    state = {k: v for k, v in state.items() if k in own or k not in optional}
    wanted = {k for k in own if k not in optional and not (skip and k.startswith(skip))}
    missing, extra = wanted - set(state), set(state) - set(own)
    if missing or extra:
        raise PretrainedError(
            f"{path}: the weights do not fit the encoder: missing {sorted(missing)[:3]}, "
            f"unexpected {sorted(extra)[:3]}"
        )
    for key, value in state.items():
        if own[key].shape != value.shape:
            raise PretrainedError(
                f"{path}: {key} is {tuple(value.shape)}, the encoder's is {tuple(own[key].shape)}"
            )
    module.load_state_dict(state, strict=False)


def bytes_per_round(model: torch.nn.Module) -> dict[str, int]:
    """Bytes one site sends (and receives) a round: the adapted model's trainable arrays
    (`lora`), and every array of the same model without adapters (`full` fine-tuning)."""
    lora = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    inner = model.model if isinstance(model, Adapted) else model
    full = sum(
        t.numel() * t.element_size()
        for name, t in inner.state_dict(keep_vars=True).items()
        if "lora_" not in name
    )
    return {"lora": lora, "full": full}
