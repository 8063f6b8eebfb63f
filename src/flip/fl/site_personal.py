"""A site's personalisation of a hub task in the deployment ClientApp (`TaskSpec.personal`).

The site's own part (FedBN's batch norm, FedPer's head, or Ditto's own model) lives in
Flower's node state for the run (`context.state`, which the SuperNode keeps per run for
each node from one message to the next) and in a file of the site's own (`save`: 0600,
in a 0700 folder beside its ledger, written atomically), so a restarted SuperNode or a
resumed hub run (a new Flower run) goes on from it (`load`). It never leaves the site:
what the site sends carries its own layers as the global ones it received. It is kept
under the task it belongs to (`about`: project, task hash and hub run, or the Flower run
outside the hub), and a message naming another task finds nothing: one task's part never
starts another's training or scores as another's personal model. The logic is
`flip.fl.personal`'s.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from flwr.app import ArrayRecord, Context

from flip.data.features.tabular import TabularData
from flip.fl import personal
from flip.fl.tasks import outcomes, training
from flip.fl.tasks.base import TaskSpec
from flip.fl.tasks.binary import load_arrays
from flip.fl.tasks.models import new_model
from flip.private_files import FOLDER_MODE, private_folder, write_private

#: The prefix of the node-state record holding the site's own part of a task.
KEY = "flip-personal"

State = dict[str, Any]


def about(config: Mapping[str, Any], counter: str) -> str:
    """Which task and run a site's own part belongs to: the message's project and task hash,
    and its round counter (`client.round_count`: the hub run, or the Flower run)."""
    named = "\0".join((str(config["project"]), str(config["task-hash"]), counter))
    return hashlib.sha256(named.encode()).hexdigest()[:32]


def kept(context: Context, owner: str) -> State | None:
    """The site's own part of task and run `owner` in the node state (None before its first
    round, and for any other task or run)."""
    record = context.state.get(f"{KEY}-{owner}")
    return None if record is None else record.to_torch_state_dict()


def keep(context: Context, owner: str, own: State) -> None:
    """Keep the site's own part of task and run `owner` in the node state for its next
    message, in place of any other task's."""
    for key in [k for k in context.state if k.startswith(f"{KEY}-")]:
        del context.state[key]
    context.state[f"{KEY}-{owner}"] = ArrayRecord({k: torch.as_tensor(v) for k, v in own.items()})


def _folder(ledger: str) -> Path:
    return Path(ledger).resolve().parent / "personal"


def _private(ledger: str) -> Path:
    """The folder of own parts, made 0700 even where it was already there more open."""
    folder = private_folder(_folder(ledger))
    os.chmod(folder, FOLDER_MODE)
    return folder


def save(ledger: str, owner: str, own: State) -> str:
    """Write the site's own part of task and run `owner` to a new file beside the site's
    `ledger` (0600, named by its SHA-256, written whole before it is named); that digest.
    The part it replaces stays until `prune`, once the ledger names the new one."""
    buffer = io.BytesIO()
    torch.save({k: torch.as_tensor(v).detach().cpu() for k, v in own.items()}, buffer)
    data = buffer.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    path = _private(ledger) / f"{owner}.{digest}.pt"
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    write_private(partial, data)
    partial.replace(path)
    return digest


def prune(ledger: str, owner: str, digest: str) -> None:
    """Remove the files of task and run `owner` but the one of `digest` (the ledger's)."""
    for path in _folder(ledger).glob(f"{owner}.*.pt"):
        if path.name != f"{owner}.{digest}.pt":
            path.unlink(missing_ok=True)


def load(ledger: str, owner: str, digest: str) -> State | None:
    """The own part of task and run `owner` the site saved as `digest` (what its ledger
    recorded when it trained), if the file is there and still hashes to it; else None."""
    try:
        data = (_folder(ledger) / f"{owner}.{digest}.pt").read_bytes()
    except OSError:
        return None
    if hashlib.sha256(data).hexdigest() != digest:
        return None
    return dict(torch.load(io.BytesIO(data), weights_only=True))


def start_state(spec: TaskSpec, received: State, own: State | None) -> State:
    """Where the site trains from: the global state, with its own layers under FedBN/FedPer."""
    model = load_arrays(new_model(spec), received)
    personal.with_own(model, spec.personal, own)
    return model.state_dict()


def after_round(
    spec: TaskSpec,
    trained: State,
    received: State,
    own: State | None,
    data: TabularData,
    *,
    seed: int,
    device: torch.device,
) -> tuple[State, State]:
    """(what the site sends, what it keeps) after training the global model: its layers of
    `trained`, or (Ditto) its own model trained toward `received` by ditto_lambda."""
    model = load_arrays(new_model(spec), trained)

    def train_own(own_model: torch.nn.Module, anchor: list[torch.Tensor]) -> None:
        training.train(
            own_model,
            data,
            epochs=spec.local_epochs,
            learning_rate=spec.learning_rate,
            batch_size=spec.batch_size,
            l2=spec.l2,
            seed=seed + 500,
            proximal_mu=float(spec.ditto_lambda or 0.0),
            anchor=anchor,
            outcome=spec.data.outcome,
            device=device,
        )

    mode = str(spec.personal)
    keeps = personal.kept_after(model, received, mode, own, train_own)
    return personal.sent(trained, received, personal.own_keys(model, mode)), keeps


def personal_metrics(
    spec: TaskSpec, received: State, own: State | None, data: TabularData, device: torch.device
) -> dict[str, float]:
    """The site's personal model's metrics on `data`, each named `personal_<metric>`."""
    global_model = load_arrays(new_model(spec), received)
    model = personal.personal_model(global_model, str(spec.personal), own)
    found = training.evaluate(model, data, spec.data.outcome, device)
    return {f"personal_{k}": v for k, v in outcomes.reported(found).items()}
