"""A hub deployment run carries each round's evaluation with the next train replies by
default (evaluate messages after the last round only, or every `evaluate_every` rounds the
task names), and falls back to evaluating every round under secure aggregation."""

import orjson
import pytest
from sqlalchemy import insert, select

from flip.fl.runtime.flower import DeploymentError
from flip.fl.tasks import mace_task, task_hash
from flip.hub.db import projects, runs, tasks
from flip.hub.federation import Federation


class SuperLink:
    """Stands in for the hub's SuperLink: records what a run is submitted with."""

    process = object()

    def __init__(self) -> None:
        self.submitted: list[dict] = []

    def run(self, run_dir, project, spec, **options):
        self.submitted.append(options)
        raise DeploymentError("not trained here")


def _submitted(hub, tmp_path, spec, rounds: int) -> dict:
    return _ran(hub, tmp_path, spec, rounds).superlink.submitted[0]


def _ran(hub, tmp_path, spec, rounds: int) -> Federation:
    """Run `spec` for `rounds` rounds on a stand-in SuperLink, no site joined."""
    engine = hub.app.state.engine
    with engine.begin() as conn:
        project = conn.execute(insert(projects).values(name="p", owner_id=1)).inserted_primary_key
        task = conn.execute(
            insert(tasks).values(
                project_id=project[0],
                hash=task_hash(spec),
                kind=spec.kind,
                spec=spec.model_dump_json(),
            )
        ).inserted_primary_key
        run = conn.execute(
            insert(runs).values(
                project_id=project[0],
                task_id=task[0],
                rounds=rounds,
                strategy=spec.strategy.name,
                runtime="deployment",
                status="running",
            )
        ).inserted_primary_key
    federation = Federation(tmp_path)
    federation.superlink = SuperLink()
    federation.engine = engine
    federation._run(run[0])
    return federation


@pytest.mark.parametrize(
    ("update", "expected"),
    [
        ({}, 4),  # evaluate messages after the last of 4 rounds only
        ({"evaluate_every": 2}, 2),
        ({"evaluate_every": 1}, 1),  # every round, as before carried evaluation
        ({"secure_aggregation": True}, None),  # SecAgg+: evaluates every round itself
    ],
)
def test_a_hub_run_carries_evaluation_unless_the_task_says_otherwise(
    hub, tmp_path, update, expected
):
    spec = mace_task().model_copy(update=update)
    assert _submitted(hub, tmp_path, spec, rounds=4)["evaluate_every"] == expected


def test_a_robust_rule_its_joined_sites_cannot_hold_fails_before_the_superlink_runs(hub, tmp_path):
    """Krum tolerating one malicious site needs five: with none joined the run fails with
    that one line, not with what Flower raises inside the ServerApp."""
    spec = mace_task().model_copy(
        update={"strategy": {"name": "krum", "options": {"num_malicious_nodes": 1}}}
    )
    spec = type(spec).model_validate(spec.model_dump())
    federation = _ran(hub, tmp_path, spec, rounds=2)
    assert federation.superlink.submitted == [], "nothing reached the SuperLink"
    with hub.app.state.engine.connect() as conn:
        status, results = conn.execute(select(runs.c.status, runs.c.results)).one()
    assert status == "failed"
    assert "needs at least 5 sites, not 0" in orjson.loads(results)["error"]
