"""Task kinds -> model factories, and the code each kind's hash covers."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import torch

from flip.fl.tasks import binary, tabular_logreg, tabular_mlp

_KINDS: dict[str, ModuleType] = {"tabular-logreg": tabular_logreg, "tabular-mlp": tabular_mlp}

KINDS = tuple(_KINDS)


def model_factory(kind: str) -> Callable[[int, int], torch.nn.Module]:
    """new_model(n_features, seed) of a task kind."""
    if kind not in _KINDS:
        raise ValueError(f"unknown task {kind!r}: choose one of {', '.join(KINDS)}")
    return _KINDS[kind].new_model


def code_modules(kind: str) -> list[ModuleType]:
    """The modules whose source a task of this kind runs: its model and the training loop."""
    model_factory(kind)
    return [_KINDS[kind], binary]
