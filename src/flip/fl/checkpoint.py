"""Round checkpoints of a federated run: the global model and metrics after each round.

Written atomically (a temporary file, then a rename), so a server killed at any
moment leaves the last complete round behind, and a restarted run goes on from it
(with the run's federated scaling, so it scales as before, and the strategy's state
and the server's random streams, so it ends with the weights of an unbroken run).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from flip.data.features.tabular import Scaling


@dataclass
class Checkpoint:
    """Rounds completed, the global model after the last of them, each round's metrics, the
    run's scaling, the best round so far with its model, the strategy's state (see
    `flip.fl.resume`), the server's random streams, and which run it is of (`run`: its
    project, task hash and hub run; empty in checkpoints written before it was kept)."""

    round: int
    state_dict: dict[str, torch.Tensor]
    rounds: list[dict[str, float]] = field(default_factory=list)
    scaling: Scaling | None = None
    best_round: int | None = None
    best_state_dict: dict[str, torch.Tensor] = field(default_factory=dict)
    strategy: list[dict[str, Any]] = field(default_factory=list)
    random: dict[str, Any] = field(default_factory=dict)
    run: str = ""


def save(path: Path, checkpoint: Checkpoint) -> None:
    """Replace the checkpoint at `path` in one step."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save(
        {
            "round": checkpoint.round,
            "state_dict": checkpoint.state_dict,
            "rounds": checkpoint.rounds,
            "scaling": checkpoint.scaling and checkpoint.scaling.model_dump_json(),
            "best_round": checkpoint.best_round,
            "best_state_dict": checkpoint.best_state_dict,
            "strategy": checkpoint.strategy,
            "random": checkpoint.random,
            "run": checkpoint.run,
        },
        partial,
    )
    os.replace(partial, path)


def load(path: Path) -> Checkpoint | None:
    """The checkpoint at `path`, or None when there is none yet."""
    if not path.exists():
        return None
    saved = torch.load(path, weights_only=True)
    scaling = saved.get("scaling")
    return Checkpoint(
        int(saved["round"]),
        saved["state_dict"],
        list(saved["rounds"]),
        Scaling.model_validate_json(scaling) if scaling else None,
        saved.get("best_round"),
        saved.get("best_state_dict", {}),
        saved.get("strategy", []),
        saved.get("random", {}),
        str(saved.get("run", "")),
    )
