"""Task kinds -> model factories, the code each kind's hash covers, and custom task code.

A custom task carries its module as source in the spec. At a site it is executed
only in the sandbox (`sandbox`), which the ClientApp starts after the site's approval
of the task's hash, so a site never runs code it has not approved.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType

import torch

from flip.data.features import image, text, volume
from flip.data.sources import dicom_deid
from flip.fl.tasks import (
    adapters,
    binary,
    confinement,
    image_cnn,
    multimodal,
    outcomes,
    sandbox,
    tabular_logreg,
    tabular_mlp,
    text_classifier,
    training,
)
from flip.fl.tasks.base import TaskSpec

_KINDS: dict[str, ModuleType] = {"tabular-logreg": tabular_logreg, "tabular-mlp": tabular_mlp}
#: Kinds that read notes or images, and the feature code each runs besides its model.
_MODAL_KINDS: dict[str, tuple[ModuleType, list[ModuleType]]] = {
    "text-classifier": (text_classifier, [text]),
    "image-cnn": (image_cnn, [image, volume, dicom_deid]),
    "multimodal": (multimodal, [text, image, volume, dicom_deid, text_classifier, image_cnn]),
}

#: The built-in kinds that train on any table of features (also experiments on files);
#: a site task may also be a kind that reads notes or images, or `custom`, carrying its code.
KINDS = tuple(_KINDS)


class TaskCodeError(ValueError):
    """A custom task's code does not load or does not define new_model(n_features, seed)."""


def model_factory(kind: str) -> Callable[..., torch.nn.Module]:
    """new_model(n_features, seed, n_outputs=1) of a built-in task kind."""
    if kind not in _KINDS:
        raise ValueError(f"unknown task {kind!r}: choose one of {', '.join(KINDS)}")
    return _KINDS[kind].new_model


def new_model(spec: TaskSpec, bases: Mapping[str, Path] | None = None) -> torch.nn.Module:
    """A fresh model of the task, from its kind or (custom) from the code it carries; under
    FedBN (`spec.personal`) behind a batch norm of its inputs that each site keeps.

    A task with adapters gets its pretrained encoders from `bases` (weights name -> the
    site's local path, hash-checked again as loaded); without them (the server) their
    frozen arrays are left at random, which never leave the model (`adapters.Adapted`)."""
    if spec.kind in _MODAL_KINDS:
        model = _modal_model(spec)
        return _adapted(spec, model, bases) if spec.adapters else model
    n_outputs = spec.data.n_outputs
    if spec.kind != "custom":
        from flip.fl.personal import with_site_norm

        model = model_factory(spec.kind)(spec.data.width, spec.seed, n_outputs)
        return with_site_norm(model, spec.personal, spec.data.width)
    module = load_custom(spec)
    if n_outputs == 1:
        model = module.new_model(spec.data.width, spec.seed)
    elif "n_outputs" in inspect.signature(module.new_model).parameters:
        model = module.new_model(spec.data.width, spec.seed, n_outputs=n_outputs)
    else:
        raise TaskCodeError(
            f"{spec.name}: a {spec.data.outcome} outcome has {n_outputs} outputs: "
            "new_model must take n_outputs"
        )
    if not isinstance(model, torch.nn.Module):
        raise TaskCodeError(f"{spec.name}: new_model returned {type(model).__name__}, not a Module")
    return model


def _modal_model(spec: TaskSpec) -> torch.nn.Module:
    data = spec.data
    n_features, size = len(data.features), data.image.size if data.image else 0
    channels = data.image.channels if data.image else 1
    depth = data.image.depth if data.image else None
    network = spec.image_network or "small-cnn"
    if spec.kind == "text-classifier":
        return text_classifier.new_model(n_features, data.n_text, spec.seed, data.n_outputs)
    if spec.kind == "image-cnn":
        offset = n_features + data.n_text
        return image_cnn.new_model(
            offset, size, spec.seed, data.n_outputs, channels, network, depth
        )
    return multimodal.new_model(
        n_features, data.n_text, size, spec.seed, data.n_outputs, channels, network, depth
    )


def _adapted(
    spec: TaskSpec, model: torch.nn.Module, bases: Mapping[str, Path] | None
) -> adapters.Adapted:
    """`model` with its notes and/or image branch fine-tuned by LoRA from pretrained weights."""
    data = spec.data
    if data.text is not None and data.text.adapter is not None:
        adapter = data.text.adapter
        notes = adapters.tuned_text(
            len(data.features), data.n_text, data.n_outputs, adapter, _base(bases, adapter)
        )
        if spec.kind == "text-classifier":
            model = notes
        else:
            model.notes = notes
    if data.image is not None and data.image.adapter is not None:
        adapter = data.image.adapter
        cnn = model.cnn if spec.kind == "image-cnn" else model.image.cnn
        adapters.tune_image(cnn, str(spec.image_network), adapter, _base(bases, adapter))
    return adapters.Adapted(model)


def _base(bases: Mapping[str, Path] | None, adapter) -> Path | None:
    if bases is None:
        return None
    name = adapter.weights.name
    if name not in bases:
        raise ValueError(f"no local path given for the pretrained weights {name!r}")
    return Path(bases[name])


def bytes_per_round(spec: TaskSpec) -> dict[str, int]:
    """Bytes a site sends (and receives) each round for the task as it is (`lora`: its
    trainable arrays) and under full fine-tuning of the same network (`full`)."""
    return adapters.bytes_per_round(new_model(spec))


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
    """The modules whose source a task of this kind runs: its model, the training loop,
    and for kinds that read notes or images, the code that turns them into inputs."""
    loop = [binary, training, outcomes]
    if kind == "custom":
        return [*loop, sandbox, confinement]
    if kind in _MODAL_KINDS:
        model, features = _MODAL_KINDS[kind]
        return [model, adapters, *loop, *features]
    model_factory(kind)
    return [_KINDS[kind], *loop]
