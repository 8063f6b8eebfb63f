"""The site's cache of a task's extracted splits, so a ClientApp does not re-read the store.

In deployment every Flower message starts a fresh ClientApp process. Extracting a
task's dataset (SQL over the CDM, then a stratified split) costs more than the round's
training, so the first process to extract it keeps the two splits, and the SHA-256 of
what it extracted, in a private file beside the store, and later ones load that file.
The file is keyed by the task's data spec, test fraction and seed and by the store's
file fingerprint (path, inode, size and modification time of the database and its
write-ahead log): any write to the store makes a new key, so a changed store is always
read again. A store behind a server URL (PostgreSQL) has no such fingerprint and is
read for every message. Nothing in the cache leaves the site.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from flip.data.features.tabular import TabularData
from flip.fl.tasks.base import TaskSpec, load_raw_splits
from flip.private_files import private_folder

#: Bumped when what the cache holds changes shape, so old files are never read.
FORMAT = 1
_PARTS = ("train", "test")


def store_file(store: str) -> Path | None:
    """The database file of a file-backed store (DuckDB or SQLite), else None."""
    for scheme in ("duckdb:///", "sqlite:///"):
        if store.startswith(scheme):
            return Path(store.removeprefix(scheme))
    return None if "://" in store else Path(store)


def store_fingerprint(path: Path) -> str | None:
    """A digest of the store file's and its write-ahead logs' identity, size and mtime;
    None when the file does not exist."""
    stamp: list[object] = [str(path.resolve())]
    for part in (path, Path(f"{path}.wal"), Path(f"{path}-wal")):
        try:
            found = part.stat()
        except FileNotFoundError:
            if part == path:
                return None
            stamp.append(None)
            continue
        stamp.append((found.st_ino, found.st_size, found.st_mtime_ns))
    return hashlib.sha256(json.dumps(stamp).encode()).hexdigest()


def _spec_key(spec: TaskSpec) -> str:
    what = {
        "format": FORMAT,
        "data": spec.data.model_dump(mode="json"),
        "test_fraction": spec.test_fraction,
        "seed": spec.seed,
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:32]


def fingerprint_of(splits: tuple[TabularData, TabularData]) -> str:
    """SHA-256 of the splits' features and outcomes, as extracted (the data snapshot)."""
    digest = hashlib.sha256()
    for split in splits:
        digest.update(np.ascontiguousarray(split.x).tobytes())
        digest.update(np.ascontiguousarray(split.y).tobytes())
    return digest.hexdigest()


def cached_splits(store: str, spec: TaskSpec) -> tuple[tuple[TabularData, TabularData], str]:
    """The task's unscaled (train, test) splits at this store and their data fingerprint,
    from the cache when the store has not changed since they were kept."""
    path = store_file(store)
    stamp = store_fingerprint(path) if path is not None else None
    if path is None or stamp is None:
        splits = load_raw_splits(store, spec)
        return splits, fingerprint_of(splits)
    folder = path.parent / f"{path.name}.splits"
    key = _spec_key(spec)
    kept = folder / f"{key}-{stamp[:32]}.npz"
    if kept.exists():
        try:
            return _read(kept)
        except (OSError, ValueError, KeyError):
            kept.unlink(missing_ok=True)
    splits = load_raw_splits(store, spec)
    fingerprint = fingerprint_of(splits)
    if store_fingerprint(path) == stamp:  # the store did not change while it was read
        _write(folder, kept, splits, fingerprint)
    return splits, fingerprint


def _read(path: Path) -> tuple[tuple[TabularData, TabularData], str]:
    with np.load(path, allow_pickle=False) as f:
        names = [str(n) for n in f["feature_names"]]
        splits = tuple(
            TabularData(f[f"{p}_person_ids"], f[f"{p}_x"], f[f"{p}_y"], names) for p in _PARTS
        )
        return (splits[0], splits[1]), str(f["fingerprint"])


def _write(
    folder: Path, path: Path, splits: tuple[TabularData, TabularData], fingerprint: str
) -> None:
    """Write the cache file whole (a temporary file renamed), then drop the task's older ones."""
    private_folder(folder)
    arrays: dict[str, np.ndarray] = {
        "feature_names": np.array(splits[0].feature_names, dtype=str),
        "fingerprint": np.array(fingerprint),
    }
    for part, split in zip(_PARTS, splits, strict=True):
        arrays |= {f"{part}_person_ids": split.person_ids, f"{part}_x": split.x}
        arrays[f"{part}_y"] = split.y
    handle, temporary = tempfile.mkstemp(dir=folder, suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            np.savez(out, **arrays)
        os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)
    key = path.name.split("-")[0]
    for older in folder.glob(f"{key}-*.npz"):
        if older != path:
            older.unlink(missing_ok=True)
