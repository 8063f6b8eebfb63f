"""The privacy budget a project's runs spent, as its page shows it: each run with differential
privacy, the rounds it finished and the site-level epsilon they cost, and the sum."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import orjson
from pydantic import ValidationError
from sqlalchemy import Connection, func, select

from flip.fl.privacy import PrivacySpec
from flip.hub.db import run_rounds, runs, tasks


@lru_cache(maxsize=1024)
def _spent(privacy: bytes, rounds: int) -> tuple[str, float | None, float | None]:
    """The level, the site-level epsilon of `rounds` rounds and the delta of the `privacy`
    spec (JSON); epsilon None where the hub cannot compute it (record level: it depends on
    each site's rows), all but the level None for a spec that does not read."""
    try:
        spec = PrivacySpec.model_validate_json(privacy)
    except ValidationError:
        return "unreadable", None, None
    try:
        epsilon = spec.epsilon(rounds) if rounds else 0.0
    except (ArithmeticError, ValueError):
        epsilon = None
    return spec.level, epsilon, spec.delta


def project_budget(conn: Connection, project_id: int) -> dict[str, Any]:
    """The project's runs with differential privacy (newest first): id, status, level, rounds
    finished, epsilon spent (None: each site accounts it); the epsilons' sum and largest delta."""
    done = (
        select(run_rounds.c.run_id, func.count().label("n"))
        .group_by(run_rounds.c.run_id)
        .subquery()
    )
    rows = conn.execute(
        select(runs.c.id, runs.c.status, tasks.c.spec, func.coalesce(done.c.n, 0).label("done"))
        .join(tasks, tasks.c.id == runs.c.task_id)
        .outerjoin(done, done.c.run_id == runs.c.id)
        .where(runs.c.project_id == project_id)
        .order_by(runs.c.id.desc())
    )
    spent = []
    for row in rows:
        privacy = orjson.loads(row.spec).get("privacy")
        if not isinstance(privacy, dict):
            continue
        key = orjson.dumps(privacy, option=orjson.OPT_SORT_KEYS)
        level, epsilon, delta = _spent(key, row.done)
        spent.append(
            {
                "run": row.id,
                "status": row.status,
                "level": level,
                "rounds": row.done,
                "epsilon": epsilon,
                "delta": delta,
            }
        )
    known = [r["epsilon"] for r in spent if r["epsilon"] is not None]
    deltas = [r["delta"] for r in spent if r["delta"] is not None]
    return {
        "runs": spent,
        "total": sum(known) if known else None,
        "delta": max(deltas) if deltas else None,
    }
