"""What a researcher reviews before proposing a task: its hash, its code, its privacy
settings and rounds, from the built-in catalog or an uploaded task package (`task.json`).

The hash is computed here as every site computes it (`flip.fl.tasks.base.task_hash`), so
what the page shows is what a site approves. Importing the task code loads Flower and
torch: it happens at the first review, in a worker thread, never at the hub's start.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import orjson

#: The largest task package the upload takes (a custom task's code is at most 200 kB).
MAX_PACKAGE = 512 * 1024


class BadTask(ValueError):
    """The package is not a task FLIP can run; the message names the field and the reason."""


def review(spec_json: bytes) -> dict[str, Any]:
    """The task in `spec_json` as the review page shows it: hash, kind, rounds, strategy,
    privacy, secure aggregation, personalisation, data, the code its hash covers, and the
    spec to propose."""
    from pydantic import ValidationError

    from flip.fl.tasks.base import TaskSpec, task_hash

    if len(spec_json) > MAX_PACKAGE:
        raise BadTask(f"task package: larger than {MAX_PACKAGE // 1024} kB")
    try:
        spec = TaskSpec.model_validate_json(spec_json)
    except ValidationError as exc:
        where = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'task'}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise BadTask(f"task package: {where}") from None
    dumped = spec.model_dump(mode="json")
    return {
        "hash": task_hash(spec),
        "kind": spec.kind,
        "name": spec.name,
        "rounds": spec.rounds,
        "strategy": dumped["strategy"],
        "privacy": dumped["privacy"],
        "secure_aggregation": spec.secure_aggregation,
        "personal": {"mode": spec.personal, "ditto_lambda": spec.ditto_lambda}
        if spec.personal
        else None,
        "training": {
            k: dumped[k]
            for k in ("learning_rate", "local_epochs", "batch_size", "l2", "test_fraction", "seed")
        },
        "data": dumped["data"],
        "code": code_of(spec.kind, spec.code, personal=spec.personal is not None),
        "spec": orjson.dumps(dumped, option=orjson.OPT_SORT_KEYS).decode(),
    }


def code_of(kind: str, custom: str | None, *, personal: bool = False) -> list[tuple[str, str]]:
    """(module, source) of the code a task of `kind` runs: the custom task's own code first,
    and a personalised task's code that keeps each site's own part last."""
    own = [("the task's own code (code)", custom)] if custom is not None else []
    return own + list(_kind_code(kind)) + (list(_personal_code()) if personal else [])


@functools.cache
def _personal_code() -> tuple[tuple[str, str], ...]:
    from flip.fl import personal, site_personal

    return tuple((m.__name__, inspect.getsource(m)) for m in (personal, site_personal))


@functools.cache
def _kind_code(kind: str) -> tuple[tuple[str, str], ...]:
    from flip.fl.tasks.models import code_modules

    return tuple((m.__name__, inspect.getsource(m)) for m in code_modules(kind))


@functools.cache
def catalog() -> tuple[dict[str, Any], ...]:
    """The built-in tasks (`flip site train --task` names), each reviewed as above."""
    from flip.fl.tasks.catalog import BUILT_IN

    out = []
    for name, make in BUILT_IN.items():
        spec = make(0)
        out.append({"id": name} | review(spec.canonical_json()))
    return tuple(out)


def built_in(name: str) -> dict[str, Any]:
    """One built-in task's review, or BadTask naming the choices."""
    for task in catalog():
        if task["id"] == name:
            return task
    names = ", ".join(t["id"] for t in catalog())
    raise BadTask(f"no built-in task {name!r}: one of {names}")
