"""What the web pages' tests need beside a hub: a model registered for a project, a
queued access request."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import select

from flip.hub.db import access_requests
from tests.hub.conftest import Hub

#: Metrics of the registered model at its two sites (as a completed run reports them).
PER_SITE = {
    "north": {"accuracy": 0.71, "auroc": 0.78, "n_train": 120, "n_test": 40},
    "south": {"accuracy": 0.66, "auroc": 0.74, "n_train": 90, "n_test": 30},
}


@contextmanager
def registry_at(hub: Hub, folder: Path) -> Iterator[Path]:
    """The hub reads its model registry from `folder` for the block's length."""
    hub.app.state.registry = folder
    try:
        yield folder
    finally:
        hub.app.state.registry = None


def registered_model(hub: Hub, project_id: int, per_site: dict | None = None) -> str:
    """Register a real (untrained) MACE model of `project_id` in the hub's registry (its sites'
    metrics and rows `per_site`, PER_SITE by default); its id."""
    from flip.fl.registry import federated_lineage, register
    from flip.fl.tasks.catalog import mace_task
    from flip.fl.tasks.models import new_model

    spec = mace_task()
    lineage = federated_lineage(
        spec,
        rounds=2,
        per_site=PER_SITE if per_site is None else per_site,
        round_metrics=[{"auroc": 0.7}, {"auroc": 0.76}],
        project=project_id,
        run=None,
    )
    record = register(
        hub.app.state.registry, f"project{project_id}", new_model(spec).state_dict(), lineage
    )
    return record.id


def request_id(hub: Hub, name: str) -> int:
    """The id of the newest access request under `name`."""
    with hub.app.state.engine.connect() as conn:
        query = select(access_requests.c.id).where(access_requests.c.name == name)
        return conn.execute(query.order_by(access_requests.c.id.desc())).scalars().first()
