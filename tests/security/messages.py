"""Flower messages as a SuperNode hands them to FLIP's ClientApp, for driving it directly."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, Metadata, RecordDict

from flip.fl.runtime.flower import HUB_RUNS_ONLY
from flip.fl.server import run_config
from flip.fl.tasks.base import TaskSpec
from flip.fl.tasks.models import new_model


def task_message(
    kind: str,
    spec: TaskSpec,
    *,
    run: int,
    server_round: int = 1,
    project: str = "p",
    hub_run: int | None = None,
    arrays: dict | None = None,
) -> Message:
    """A `kind` ("train", "evaluate") message of Flower run `run` for `spec` in `project`
    (of hub run `hub_run`, if given), carrying `arrays` (default: a fresh model's) and the
    round number the server claims."""
    config = ConfigRecord(
        {**dict(run_config(project, spec, hub_run)), "server-round": server_round}
    )
    content = RecordDict(
        {"arrays": ArrayRecord(arrays or new_model(spec).state_dict()), "config": config}
    )
    metadata = Metadata(
        run_id=run,
        message_id=uuid.uuid4().hex,
        src_node_id=0,
        dst_node_id=1,
        reply_to_message_id="",
        group_id=str(server_round),
        created_at=time.time(),
        ttl=3600.0,
        message_type=kind,
    )
    return Message(content, metadata=metadata)


def node_context(site_yaml: Path, *, run: int, hub_runs: bool = False) -> Context:
    """The context a SuperNode started with `--node-config site-config=…` gives run `run`
    (the site agent's SuperNode, serving only hub runs, with `hub_runs`)."""
    node: dict[str, str | bool] = {"site-config": str(site_yaml)}
    if hub_runs:
        node[HUB_RUNS_ONLY] = True
    return Context(
        run_id=run,
        node_id=1,
        node_config=node,
        state=RecordDict(),
        run_config={},
    )
