"""Pretrained weights are a site-side artefact: a file the site holds, named by its SHA-256.

A task names the hash; the site loads its own copy and refuses any other bytes, so a
model never starts from weights the task did not pin.
"""

from __future__ import annotations

import hashlib
import io
import pickle
from pathlib import Path

import torch


class WeightsError(ValueError):
    """A weights file is missing, is not the one the task names, or does not fit the model."""


def load_weights(model: torch.nn.Module, path: str | Path, sha256: str) -> None:
    """Load a torch state dict from `path` into `model` after checking the file's SHA-256."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise WeightsError(f"{path}: cannot read the weights: {exc.strerror or exc}") from exc
    found = hashlib.sha256(data).hexdigest()
    if found != sha256.lower():
        raise WeightsError(f"{path}: SHA-256 {found} is not the task's {sha256}: refused")
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (RuntimeError, ValueError, TypeError, EOFError, pickle.UnpicklingError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise WeightsError(f"{path}: not a torch state dict: {reason}") from exc
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: not a torch state dict (names to tensors)")
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, ValueError, KeyError) as exc:
        raise WeightsError(f"{path}: the weights do not fit the model: {exc}") from exc
