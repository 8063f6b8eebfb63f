"""Task kinds -> model factories, the code each kind's hash covers, and custom task code.

A custom task carries its model module as source in the spec. It is executed only
by `new_model`, which the ClientApp calls after the site's approval of the task's
hash, so a site never runs code it has not approved.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import torch

from flip.fl.tasks import binary, tabular_logreg, tabular_mlp
from flip.fl.tasks.base import TaskSpec

_KINDS: dict[str, ModuleType] = {"tabular-logreg": tabular_logreg, "tabular-mlp": tabular_mlp}

#: The built-in kinds; a spec may also be `custom`, carrying its own model code.
KINDS = tuple(_KINDS)


class TaskCodeError(ValueError):
    """A custom task's code does not load or does not define new_model(n_features, seed)."""


def model_factory(kind: str) -> Callable[[int, int], torch.nn.Module]:
    """new_model(n_features, seed) of a built-in task kind."""
    if kind not in _KINDS:
        raise ValueError(f"unknown task {kind!r}: choose one of {', '.join(KINDS)}")
    return _KINDS[kind].new_model


def new_model(spec: TaskSpec) -> torch.nn.Module:
    """A fresh model of the task, from its kind or (custom) from the code it carries."""
    if spec.kind != "custom":
        return model_factory(spec.kind)(len(spec.data.features), spec.seed)
    module = load_custom(spec)
    model = module.new_model(len(spec.data.features), spec.seed)
    if not isinstance(model, torch.nn.Module):
        raise TaskCodeError(f"{spec.name}: new_model returned {type(model).__name__}, not a Module")
    return model


def load_custom(spec: TaskSpec) -> ModuleType:
    """Execute a custom task's code as a fresh module (call only for an approved task)."""
    assert spec.code is not None
    module = ModuleType(f"flip_task_{spec.name}")
    try:
        exec(compile(spec.code, f"<task {spec.name}>", "exec"), module.__dict__)
    except Exception as exc:
        raise TaskCodeError(f"{spec.name}: its code does not load: {exc}") from exc
    if not callable(getattr(module, "new_model", None)):
        raise TaskCodeError(f"{spec.name}: its code defines no new_model(n_features, seed)")
    return module


def code_modules(kind: str) -> list[ModuleType]:
    """The modules whose source a task of this kind runs: its model and the training loop."""
    if kind == "custom":
        return [binary]
    model_factory(kind)
    return [_KINDS[kind], binary]
