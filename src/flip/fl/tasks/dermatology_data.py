"""A dermatology site's rows for the task, read at the site from its own store: the cohort's
features, letters (de-identified, then MiniLM token ids or hashed words) and photographs,
split by person into training and test rows, the same for the same data and seed."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flip.data.cdm.store import open_store
from flip.data.features import dermatology as features
from flip.data.features.shuffle_split import train_test_indices
from flip.data.features.tabular import Scaling, TabularData
from flip.data.features.text import embed_notes
from flip.fl.tasks.dermatology_task import DermatologyTask, Model
from flip.fl.tasks.dermatology_training import Split

#: The site's source codes for the task (its data engineer's mapping), beside its site.yaml.
CODES_FILE = "dermatology-codes.json"


@dataclass
class SiteData:
    """One site's splits for both models, the test rows' skin types, and its counts."""

    biomarker: tuple[Split, Split]
    response: tuple[Split, Split]
    test_fitzpatrick: np.ndarray
    members: int
    labelled: int
    photos: int

    def split(self, model: Model, which: str) -> Split:
        """The `which` ("train" or "test") split of `model`'s rows."""
        return getattr(self, model)[0 if which == "train" else 1]


def save_codes(folder: Path, codes: features.SiteCodes) -> None:
    """Write the site's codes to `folder`/CODES_FILE."""
    document = {
        "pasi": sorted(codes.pasi),
        "fitzpatrick": sorted(codes.fitzpatrick),
        "psa": sorted(codes.psa),
        "biologics": codes.biologics,
    }
    (folder / CODES_FILE).write_text(json.dumps(document, sort_keys=True), encoding="utf-8")


def load_codes(folder: Path) -> features.SiteCodes:
    """The site's codes from `folder`/CODES_FILE."""
    document = json.loads((folder / CODES_FILE).read_text(encoding="utf-8"))
    return features.SiteCodes(
        frozenset(document["pasi"]),
        frozenset(document["fitzpatrick"]),
        frozenset(document["psa"]),
        dict(document["biologics"]),
    )


def site_data(store: str, codes: features.SiteCodes, task: DermatologyTask) -> SiteData:
    """Read the site's cohort features from its store and split them by person (call only once
    the site has approved the task)."""
    handle = open_store(store, read_only=True)
    try:
        found = features.extract(handle, codes)
    finally:
        handle.close()
    members = found.members
    people = np.array([m.person_id for m in members], dtype=np.int64)
    labels = np.array([-1 if m.pasi75 is None else m.pasi75 for m in members])
    chosen = _test_rows(labels, task) if len(people) > 1 else np.zeros(0, dtype=np.int64)
    test_people = set(people[chosen].tolist())
    tabular = (
        np.stack([m.features for m in members])
        if members
        else np.zeros((0, len(features.FEATURES)), np.float32)
    )
    letters = embed_notes([m.letter for m in members], task.text)
    baseline_photos = features.photo_tensors([m.photo for m in members], task.image_size)
    labelled = np.array([m.pasi75 is not None for m in members], dtype=bool)
    response = Split(
        tabular[labelled],
        letters[labelled],
        baseline_photos[labelled],
        labels[labelled].astype(np.float32),
    )
    in_test = np.array([p in test_people for p in people[labelled]], dtype=bool)
    photos = features.photo_tensors(found.photo_paths, task.image_size)
    skin = np.eye(6, dtype=np.float32)[np.clip(found.photo_fitzpatrick - 1, 0, 5)]
    biomarker = Split(
        skin, np.zeros((len(skin), 0), np.float32), photos, found.photo_pasi.astype(np.float32)
    )
    photo_test = np.array([p in test_people for p in found.photo_person], dtype=bool)
    return SiteData(
        (biomarker.take(np.flatnonzero(~photo_test)), biomarker.take(np.flatnonzero(photo_test))),
        (response.take(np.flatnonzero(~in_test)), response.take(np.flatnonzero(in_test))),
        found.photo_fitzpatrick[photo_test],
        len(members),
        int(labelled.sum()),
        len(found.photo_paths),
    )


def _test_rows(labels: np.ndarray, task: DermatologyTask) -> np.ndarray:
    """The test persons' rows, stratified by PASI75 (unknown as its own class) when every
    class has two people."""
    counts = np.unique(labels, return_counts=True)[1]
    by = labels if counts.min() >= 2 and len(counts) > 1 else None
    try:
        return train_test_indices(len(labels), task.test_fraction, task.seed, by)[1]
    except ValueError:
        return train_test_indices(len(labels), task.test_fraction, task.seed, None)[1]


def response_table(split: Split) -> TabularData:
    """The response split's baseline features as a table (for the federation's scaling)."""
    n = len(split)
    return TabularData(np.arange(n), split.features, split.y, list(features.FEATURES))


def scaled(split: Split, scaling: Scaling) -> Split:
    """`split` with its features standardised by the federation's `scaling`, missing at 0."""
    table = scaling.apply(response_table(split))
    return Split(table.x.astype(np.float32), split.text, split.images, split.y)
