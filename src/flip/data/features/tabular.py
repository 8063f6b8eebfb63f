"""A tabular dataset from the CDM: one row per person at their cohort entry (index) date.

Each feature is scaled, (value - centre) / scale, the same at every site: by a
centre and scale fixed in the spec (clinical reference values; nothing is
shared), or, with `scaling="federated"`, by the mean and standard deviation of
every site's training rows, combined from sums and counts before round 1. A
missing value becomes the centre (mean imputation), 0 after scaling.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from flip.data.features.image import ImageSpec
from flip.data.features.outcomes import OutcomeClass, OutcomeKind
from flip.data.features.shuffle_split import train_test_indices
from flip.data.features.text import TextSpec
from flip.data.features.text import width as text_width

if TYPE_CHECKING:
    from flip.data.cdm.store import Store

# The CDM schema, SQLAlchemy and the image readers are imported where a dataset is
# extracted, not here: a ClientApp that reads its cached arrays never loads them.


class Feature(BaseModel):
    """One model input: age, sex, or the presence or latest value of concepts before index."""

    name: str
    source: Literal["age", "male", "condition", "observation", "measurement"]
    concept_ids: list[int] = Field(default_factory=list)
    center: float = 0.0
    scale: float = 1.0


class TabularSpec(BaseModel):
    """Cohort entry event, features and an outcome within a horizon after entry (binary,
    multi-class, a measurement's value, or the time to an event: see `outcomes`)."""

    entry_concept_ids: list[int] = Field(min_length=1)
    features: list[Feature] = Field(min_length=1)
    outcome: OutcomeKind = Field(
        "binary",
        description="binary: an outcome condition within the horizon; multiclass: the class "
        "of the first of `outcome_classes` (0: none); regression: the first value of an "
        "outcome measurement; time-to-event: days to an outcome condition, or censoring.",
    )
    outcome_concept_ids: list[int] = Field(
        default_factory=list,
        description="The outcome's conditions (binary, time-to-event) or measurements "
        "(regression).",
    )
    outcome_classes: list[OutcomeClass] = Field(
        default_factory=list, description="A multiclass outcome's classes after 0 (none)."
    )
    horizon_days: int = Field(1825, gt=0)
    lookback_days: int = Field(365, ge=0)
    scaling: Literal["fixed", "federated"] = Field(
        "fixed",
        description="fixed: each feature's centre and scale as given; federated: the mean and "
        "standard deviation over every site's training rows, from sums and counts.",
    )
    text: TextSpec | None = Field(
        None, description="Also embed each person's notes before entry, after the features."
    )
    image: ImageSpec | None = Field(
        None, description="Also each person's latest image before entry, after the notes."
    )

    @model_validator(mode="after")
    def _outcome_is_defined(self) -> TabularSpec:
        if self.outcome == "multiclass":
            if len(self.outcome_classes) < 2 or self.outcome_concept_ids:
                raise ValueError(
                    "a multiclass outcome lists at least two outcome_classes "
                    "(and no outcome_concept_ids)"
                )
        elif not self.outcome_concept_ids or self.outcome_classes:
            raise ValueError(
                f"a {self.outcome} outcome names its outcome_concept_ids (and no outcome_classes)"
            )
        return self

    @property
    def n_outputs(self) -> int:
        """The model's outputs: one per class of a multiclass outcome, else one."""
        return len(self.outcome_classes) + 1 if self.outcome == "multiclass" else 1

    @property
    def n_text(self) -> int:
        """Columns of the note embedding (0 without notes)."""
        return text_width(self.text) if self.text else 0

    @property
    def n_image(self) -> int:
        """Columns of the flattened image (0 without images)."""
        return self.image.n_columns if self.image else 0

    @property
    def width(self) -> int:
        """Columns of the dataset: the features, then the note embedding, then the image."""
        return len(self.features) + self.n_text + self.n_image


@dataclass
class TabularData:
    """Scaled features `x`, outcome `y` and the person each row belongs to (never leaves)."""

    person_ids: np.ndarray
    x: np.ndarray
    y: np.ndarray
    feature_names: list[str]

    def split(
        self, test_fraction: float, seed: int, *, stratify: bool = True
    ) -> tuple[TabularData, TabularData]:
        """A train/test split, the same for the same data and seed; with `stratify`, by the
        outcome's class (a time-to-event outcome's event) where every class has two rows."""
        labels = self.y[:, 1] if self.y.ndim == 2 else self.y
        counts = np.unique(labels, return_counts=True)[1]
        by = labels if stratify and len(counts) > 1 and counts.min() >= 2 else None
        train_idx, test_idx = train_test_indices(len(self.y), test_fraction, seed, by)
        return self._take(np.sort(train_idx)), self._take(np.sort(test_idx))

    def _take(self, idx: np.ndarray) -> TabularData:
        return TabularData(self.person_ids[idx], self.x[idx], self.y[idx], self.feature_names)


class Scaling(BaseModel):
    """Each feature's centre and scale, in the order of the spec's features."""

    model_config = ConfigDict(frozen=True)

    center: tuple[float, ...]
    scale: tuple[float, ...]

    @model_validator(mode="after")
    def _one_positive_scale_per_centre(self) -> Scaling:
        if len(self.center) != len(self.scale):
            raise ValueError("a scaling has one scale per centre")
        if not all(s > 0 for s in self.scale):
            raise ValueError("every scale must be positive")
        return self

    @classmethod
    def of_spec(cls, spec: TabularSpec) -> Scaling:
        """The centres and scales fixed in the spec (for `scaling="fixed"` only)."""
        if spec.scaling != "fixed":
            raise ValueError("this task's scaling is federated: the federation computes it")
        return cls(
            center=tuple(f.center for f in spec.features),
            scale=tuple(f.scale for f in spec.features),
        )

    def apply(self, raw: TabularData) -> TabularData:
        """`raw` with its first columns (the features) scaled and missing values at 0."""
        n = len(self.center)
        if raw.x.shape[1] < n:
            raise ValueError(f"a scaling of {n} features for data of {raw.x.shape[1]} columns")
        x = raw.x.copy()
        features = (x[:, :n] - np.array(self.center, dtype=np.float32)) / np.array(
            self.scale, dtype=np.float32
        )
        x[:, :n] = np.nan_to_num(features, nan=0.0)
        return TabularData(raw.person_ids, x, raw.y, raw.feature_names)


def _index_dates(conn, spec: TabularSpec) -> dict[int, date]:
    from sqlalchemy import func, select

    from flip.data.cdm import schema

    m = schema.measurement
    rows = conn.execute(
        select(m.c.person_id, func.min(m.c.measurement_date))
        .where(m.c.measurement_concept_id.in_(spec.entry_concept_ids))
        .group_by(m.c.person_id)
    )
    return {pid: d for pid, d in rows}


def _events(conn, table_name: str, concept_ids: set[int], with_value: bool):
    if not concept_ids:
        return []
    from sqlalchemy import select

    from flip.data.cdm import schema

    table = schema.metadata.tables[table_name]
    names = schema.EVENT_COLUMNS[table_name]
    columns = [table.c.person_id, table.c[names.concept], table.c[names.date]]
    if with_value and names.value:
        columns.append(table.c[names.value])
    return conn.execute(select(*columns).where(table.c[names.concept].in_(concept_ids)))


def extract_tabular(store: Store, spec: TabularSpec) -> TabularData:
    """The dataset of everyone with an entry event, sorted by person id, scaled by the
    spec's fixed centres and scales."""
    return Scaling.of_spec(spec).apply(extract_raw(store, spec))


def extract_raw(
    store: Store, spec: TabularSpec, entries: dict[int, date] | None = None
) -> TabularData:
    """The dataset of everyone with an entry event who has not opted out, features unscaled
    (NaN where missing); given `entries` (person: entry date), those persons at those dates
    instead of the spec's entry events."""
    from sqlalchemy import select

    from flip.data.cdm import schema
    from flip.data.cdm.rows import GENDERS
    from flip.data.cohort.optout import opted_out
    from flip.data.features.image import image_matrix, latest_images
    from flip.data.features.outcomes import outcome_labels
    from flip.data.features.text import embed_notes

    wanted: dict[str, set[int]] = defaultdict(set)
    for f in spec.features:
        wanted[f.source].update(f.concept_ids)
    with store.connect() as conn:
        excluded = opted_out(conn)
        index = _index_dates(conn, spec) if entries is None else entries
        people = {
            pid: (date(y, m or 7, d or 1), g)
            for pid, y, m, d, g in conn.execute(
                select(
                    schema.person.c.person_id,
                    schema.person.c.year_of_birth,
                    schema.person.c.month_of_birth,
                    schema.person.c.day_of_birth,
                    schema.person.c.gender_concept_id,
                )
            )
            if pid not in excluded
        }
        latest: dict[tuple[int, int], tuple[date, float]] = {}
        for pid, concept, when, value in _events(conn, "measurement", wanted["measurement"], True):
            at = index.get(pid)
            if (
                at is None
                or value is None
                or not (at - timedelta(spec.lookback_days) <= when <= at)
            ):
                continue
            if (pid, concept) not in latest or latest[(pid, concept)][0] <= when:
                latest[(pid, concept)] = (when, value)
        present: set[tuple[int, int]] = set()
        for table, ids in (
            ("condition_occurrence", wanted["condition"]),
            ("observation", wanted["observation"]),
        ):
            for pid, concept, when in _events(conn, table, ids, False):
                at = index.get(pid)
                if at is not None and when <= at:
                    present.add((pid, concept))
        candidates = sorted(p for p in index if p in people)
        labelled, y = outcome_labels(
            conn,
            spec.outcome,
            spec.outcome_concept_ids,
            spec.outcome_classes,
            index,
            spec.horizon_days,
            candidates,
        )
    pids = [pid for pid, kept in zip(candidates, labelled, strict=True) if kept]
    x = np.zeros((len(pids), len(spec.features)), dtype=np.float32)
    for row, pid in enumerate(pids):
        born, gender = people[pid]
        for col, f in enumerate(spec.features):
            x[row, col] = _value(f, pid, index[pid], born, gender, latest, present, GENDERS)
    names = [f.name for f in spec.features]
    entry = {pid: index[pid] for pid in pids}
    if spec.text is not None:
        with store.connect() as conn:
            notes = _notes_before(conn, entry, spec.text.lookback_days)
        x = np.hstack([x, embed_notes([notes.get(pid, "") for pid in pids], spec.text)])
        names += [f"note_{i}" for i in range(spec.n_text)]
    if spec.image is not None:
        with store.connect() as conn:
            files = latest_images(conn, entry, spec.image)
        x = np.hstack([x, image_matrix([files.get(pid) for pid in pids], spec.image)])
        names += [f"pixel_{i}" for i in range(spec.n_image)]
    return TabularData(np.array(pids, dtype=np.int64), x, y, names)


def _notes_before(conn, index: dict[int, date], lookback_days: int) -> dict[int, str]:
    """Each person's notes dated in the lookback window up to their entry date, joined."""
    from sqlalchemy import select

    from flip.data.cdm import schema

    n = schema.note
    texts: dict[int, list[tuple[date, str]]] = defaultdict(list)
    for pid, when, text in conn.execute(select(n.c.person_id, n.c.note_date, n.c.note_text)):
        at = index.get(pid)
        if at is not None and at - timedelta(lookback_days) <= when <= at:
            texts[pid].append((when, text or ""))
    return {pid: " ".join(t for _, t in sorted(found)) for pid, found in texts.items()}


def _value(
    f: Feature, pid: int, at: date, born: date, gender: int, latest, present, genders
) -> float:
    if f.source == "age":
        return (at - born).days / 365.25
    if f.source == "male":
        return float(gender == genders["male"])
    if f.source == "measurement":
        values = [latest[(pid, c)] for c in f.concept_ids if (pid, c) in latest]
        return max(values)[1] if values else np.nan
    return float(any((pid, c) in present for c in f.concept_ids))
