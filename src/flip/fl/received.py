"""The global weights a server sends, checked against the approved task's model before the
site counts the round, spends epsilon or reads a row.

A strategy may send the arrays by name or, having dropped the names, in the model's order
(`flip.fl.tasks.binary.load_arrays` takes both), and may flatten them; it never changes
how many there are, how many values each holds, or turns a weight into integers. A
custom task's model is built only in its sandbox, which checks its shapes itself: here its
weights must be finite floats.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import torch

from flip.fl.tasks.base import TaskSpec
from flip.fl.tasks.models import new_model

#: An array of the task's model: its name, how many values it holds, whether it is a weight
#: (floating point) rather than a counter.
Slot = tuple[str, int, bool]


@lru_cache(maxsize=64)
def _layout(spec_json: str) -> tuple[Slot, ...]:
    """The arrays of a built-in task's model, built on the meta device (no memory, no data)."""
    with torch.device("meta"):
        state = new_model(TaskSpec.model_validate_json(spec_json)).state_dict()
    return tuple((key, value.numel(), value.is_floating_point()) for key, value in state.items())


def received_problem(spec: TaskSpec, state: Mapping[str, Any]) -> str | None:
    """Why the weights the server sent cannot be the approved task's model's, in one line
    (another number of arrays, an array of another size, a weight that is not finite
    floating point), or None."""
    arrays = {key: torch.as_tensor(value) for key, value in state.items()}
    for key, array in arrays.items():
        if array.is_floating_point() and not torch.isfinite(array).all():
            return f"the server's array {key!r} is not finite"
    if spec.kind == "custom":
        bad = next((k for k, a in arrays.items() if not a.is_floating_point()), None)
        return None if bad is None else f"the server's array {bad!r} is not floating point"
    layout = _layout(spec.model_dump_json())
    if len(arrays) != len(layout):
        return f"the server sent {len(arrays)} arrays; the approved task's model has {len(layout)}"
    named = set(arrays) == {key for key, _, _ in layout}
    sent = [arrays[key] for key, _, _ in layout] if named else list(arrays.values())
    for (key, size, weight), array in zip(layout, sent, strict=True):
        if array.numel() != size:
            return f"the server's array {key!r} holds {array.numel()} values, not the {size} it has"
        if weight and not array.is_floating_point():
            return f"the server's weight {key!r} is not floating point"
    return None
