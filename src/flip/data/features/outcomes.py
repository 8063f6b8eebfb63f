"""Outcome labels from the CDM, one per person at their cohort entry (index) date.

A task's outcome is one of:

- `binary`: 1 if an outcome condition starts within the horizon after entry, else 0;
- `multiclass`: the class (1, 2, ...) of the first outcome condition within the horizon,
  in the order the classes are listed (a same-day tie goes to the earlier class), and
  0 ("none") for everyone with none of them;
- `regression`: the first value of an outcome measurement within the horizon; a person
  with no such value has no label and is left out;
- `time-to-event`: days from entry to the first outcome condition (event 1), or to the
  end of follow-up (event 0): the horizon, the end of the person's last observation
  period or their death, whichever comes first; a person with no follow-up is left out.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import date, timedelta
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from sqlalchemy import Connection

# SQLAlchemy and the CDM schema are imported where labels are read, not here: the task
# spec's outcome types load without them (see flip.data.features.tabular).

OutcomeKind = Literal["binary", "multiclass", "regression", "time-to-event"]
OUTCOMES: tuple[OutcomeKind, ...] = ("binary", "multiclass", "regression", "time-to-event")


class OutcomeClass(BaseModel):
    """One class of a multi-class outcome: a name and the conditions that make it."""

    name: str = Field(min_length=1, max_length=100)
    concept_ids: list[int] = Field(min_length=1)


def _events_within(
    conn: Connection, table: str, concept_ids: Iterable[int], index: dict[int, date], horizon: int
) -> Iterator[tuple[int, int, date, float | None]]:
    """(person, concept, date, value) of each `concept_ids` event within the horizon after
    the person's entry; a measurement without a value is skipped."""
    from sqlalchemy import select

    from flip.data.cdm import schema

    names = schema.EVENT_COLUMNS[table]
    t = schema.metadata.tables[table]
    columns = [t.c.person_id, t.c[names.concept], t.c[names.date]]
    if names.value:
        columns.append(t.c[names.value])
    rows = conn.execute(select(*columns).where(t.c[names.concept].in_(list(concept_ids))))
    for pid, concept, when, *rest in rows:
        value = rest[0] if rest else None
        at = index.get(pid)
        if at is None or not at < when <= at + timedelta(horizon):
            continue
        if names.value and value is None:
            continue
        yield pid, concept, when, value


def _first(events: Iterable[tuple[int, tuple, object]]) -> dict[int, object]:
    """Per person, the payload of the event with the smallest key."""
    best: dict[int, tuple[tuple, object]] = {}
    for pid, key, payload in events:
        if pid not in best or key < best[pid][0]:
            best[pid] = (key, payload)
    return {pid: payload for pid, (_, payload) in best.items()}


def _follow_up_ends(conn: Connection, pids: list[int]) -> dict[int, date]:
    """Each person's end of follow-up before the horizon: last observation or death."""
    ends: dict[int, date] = {}
    from sqlalchemy import func, select

    from flip.data.cdm import schema

    op = schema.observation_period
    for pid, end in conn.execute(
        select(op.c.person_id, func.max(op.c.observation_period_end_date)).group_by(op.c.person_id)
    ):
        ends[pid] = end
    for pid, died in conn.execute(select(schema.death.c.person_id, schema.death.c.death_date)):
        ends[pid] = min(died, ends.get(pid, died))
    wanted = set(pids)
    return {pid: end for pid, end in ends.items() if pid in wanted}


def outcome_labels(
    conn: Connection,
    kind: OutcomeKind,
    concept_ids: list[int],
    classes: list[OutcomeClass],
    index: dict[int, date],
    horizon_days: int,
    pids: list[int],
) -> tuple[np.ndarray, np.ndarray]:
    """(which of `pids` have a label, the labels of those): shape (n,) or, for
    time-to-event, (n, 2) of days and event."""
    if kind == "multiclass":
        class_of: dict[int, int] = {}
        for number, outcome_class in reversed(list(enumerate(classes, start=1))):
            class_of.update(dict.fromkeys(outcome_class.concept_ids, number))
        events = _events_within(conn, "condition_occurrence", class_of, index, horizon_days)
        first = _first((p, (w, class_of[c]), class_of[c]) for p, c, w, _ in events)
        y = np.array([first.get(pid, 0) for pid in pids], dtype=np.float32)
        return np.ones(len(pids), dtype=bool), y
    if kind == "regression":
        events = _events_within(conn, "measurement", concept_ids, index, horizon_days)
        first = _first((p, (w, c), v) for p, c, w, v in events)
        keep = np.array([pid in first for pid in pids], dtype=bool)
        y = np.array([first[pid] for pid in pids if pid in first], dtype=np.float32)
        return keep, y
    events = _events_within(conn, "condition_occurrence", concept_ids, index, horizon_days)
    first = _first((p, (w,), w) for p, c, w, _ in events)
    if kind == "binary":
        y = np.array([pid in first for pid in pids], dtype=np.float32)
        return np.ones(len(pids), dtype=bool), y
    ends = _follow_up_ends(conn, pids)
    rows: list[tuple[float, float]] = []
    keep = np.zeros(len(pids), dtype=bool)
    for i, pid in enumerate(pids):
        at = index[pid]
        if pid in first:
            rows.append(((first[pid] - at).days, 1.0))
            keep[i] = True
            continue
        end = min(at + timedelta(horizon_days), ends.get(pid, at + timedelta(horizon_days)))
        if end > at:
            rows.append(((end - at).days, 0.0))
            keep[i] = True
    return keep, np.array(rows, dtype=np.float32).reshape(-1, 2)
