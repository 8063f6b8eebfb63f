"""Custom task folders: `flip fl new-task` writes one, `flip fl pack-task` turns it into a spec.

A folder holds `model.py` (the model: `new_model(n_features, seed)`) and
`task.yaml` (the rest of the spec: data, training, rounds, privacy). Packing puts
the model's source into the spec, so the hash covers every byte of it and the
hub can carry it to the sites for approval.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from pydantic import ValidationError

from flip.fl.tasks.base import TaskSpec, task_hash
from flip.fl.tasks.catalog import mace_task
from flip.problems import first_problem

MODEL_TEMPLATE = '''"""{name}: a custom FLIP task model.

FLIP calls new_model(n_features, seed) at the server (the initial global model)
and at each site (to load the global weights before local training). The model
takes a float tensor of shape (batch, n_features) -- the task's features, in the
order task.yaml lists them, already scaled -- and returns one output per row
(shape (batch, 1); a multiclass outcome calls new_model(n_features, seed,
n_outputs) for one logit per class). FLIP trains it with its own mini-batch SGD
loop on the outcome's loss; federation averages every parameter, so keep the
state dict's shapes fixed.

To train or evaluate your own way, also define
    train(model, x, y, config, device) -> dict[str, float]
    evaluate(model, x, y, config, device) -> dict[str, float]
over numpy arrays and a torch device (docs/task-authoring.md lists `config`).

Rules: build everything from the arguments (the same seed gives the same
starting weights everywhere), import only what the sites have (torch, numpy),
read no files and open no network connections. A site runs this code only after
approving the hash of the packed task, in a process without network and within
its time and memory limits; any change to this file changes that hash.
"""

import torch

HIDDEN = 16


def new_model(n_features: int, seed: int) -> torch.nn.Module:
    """A fresh model; its first weights depend only on `seed`."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(n_features, HIDDEN),
        torch.nn.Tanh(),
        torch.nn.Linear(HIDDEN, 1),
    )
'''


class TaskFolderError(ValueError):
    """The task folder is missing a file or its task.yaml is not a valid spec."""


def new_task(name: str, parent: Path) -> Path:
    """Write `parent/name/` with a documented model.py and a task.yaml to edit; return it."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}", name):
        raise TaskFolderError(f"{name!r}: use letters, digits, - and _ (at most 64)")
    folder = parent / name
    if folder.exists():
        raise TaskFolderError(f"{folder} exists: choose another name or remove it")
    folder.mkdir(parents=True)
    (folder / "model.py").write_text(MODEL_TEMPLATE.format(name=name), encoding="utf-8")
    example = mace_task().model_dump(mode="json", exclude={"kind", "code", "name", "privacy"})
    config = {"name": name, **example, "rounds": 10}
    header = (
        f"# {name}: everything about the task but its model (model.py).\n"
        "# data: cohort entry, outcome, features and their scaling: fixed (each feature's\n"
        "# center and scale) or federated (docs/task-authoring.md);\n"
        "# then training settings, rounds and, optionally, privacy.\n"
        "# `flip fl pack-task` turns this folder into task.json and prints its hash.\n"
    )
    (folder / "task.yaml").write_text(header + yaml.safe_dump(config, sort_keys=False))
    return folder


def pack_task(folder: Path) -> tuple[TaskSpec, str, Path]:
    """Build the spec from the folder, write `task.json` beside it; (spec, hash, path)."""
    model, config = folder / "model.py", folder / "task.yaml"
    for needed in (model, config):
        if not needed.exists():
            raise TaskFolderError(f"{needed} is missing: `flip fl new-task` writes both files")
    try:
        raw = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
        spec = TaskSpec.model_validate(
            {**raw, "kind": "custom", "code": model.read_text(encoding="utf-8")}
        )
    except yaml.YAMLError as exc:
        raise TaskFolderError(f"{config}: not YAML: {exc}") from exc
    except ValidationError as exc:
        raise TaskFolderError(f"{config}: {first_problem(exc)}") from exc
    try:
        compile(spec.code or "", str(model), "exec")
    except SyntaxError as exc:
        raise TaskFolderError(f"{model}:{exc.lineno}: {exc.msg}") from exc
    out = folder / "task.json"
    out.write_text(json.dumps(spec.model_dump(mode="json"), indent=2), encoding="utf-8")
    return spec, task_hash(spec), out
