"""The site's cache of a task's splits: a ClientApp process reads it instead of the store,
and any write to the store (an opt-out list loaded, say) makes the next one read the store."""

import stat

import numpy as np
import pytest
from sqlalchemy import select

from flip.data.cdm import schema
from flip.data.cdm.store import open_store
from flip.data.cohort.optout import load_optout
from flip.data.ingest import ingest_path
from flip.fl import split_cache
from flip.fl.split_cache import cached_splits, fingerprint_of
from flip.fl.tasks import mace_task
from flip.fl.tasks.base import load_raw_splits


@pytest.fixture
def store(tmp_path, exported):
    _, patients, folder = exported("fhir-bundle", n=60)
    location = tmp_path / "site" / "store.duckdb"
    location.parent.mkdir()
    store = open_store(location)
    store.create()
    ingest_path(store, "fhir", folder)
    store.close()
    return location, patients


@pytest.fixture
def extractions(monkeypatch):
    """How many times the store was read (the cache's only way to the data)."""
    calls = []

    def counted(store, spec):
        calls.append(store)
        return load_raw_splits(store, spec)

    monkeypatch.setattr(split_cache, "load_raw_splits", counted)
    return calls


def _same(a, b) -> None:
    for left, right in zip(a, b, strict=True):
        np.testing.assert_array_equal(left.person_ids, right.person_ids)
        np.testing.assert_array_equal(left.x, right.x)
        np.testing.assert_array_equal(left.y, right.y)
        assert left.feature_names == right.feature_names


def test_the_second_process_reads_the_kept_splits_not_the_store(store, extractions):
    location, _ = store
    spec = mace_task()
    first, fingerprint = cached_splits(str(location), spec)
    again, same_fingerprint = cached_splits(str(location), spec)

    assert len(extractions) == 1
    _same(first, again)
    _same(first, load_raw_splits(str(location), spec))
    assert fingerprint == same_fingerprint == fingerprint_of(first)
    kept = list((location.parent / "store.duckdb.splits").iterdir())
    assert len(kept) == 1 and stat.S_IMODE(kept[0].stat().st_mode) == 0o600


def test_a_patient_who_opts_out_after_the_splits_were_kept_is_left_out_of_the_next(
    store, extractions, tmp_path
):
    location, patients = store
    spec = mace_task()
    (train, test), before = cached_splits(str(location), spec)
    db = open_store(location)
    with db.connect() as conn:
        rows = conn.execute(select(schema.person.c.person_source_value, schema.person.c.person_id))
        ids = {source: pid for source, pid in rows}
    leaving = next(p.source_id for p in patients if ids.get(p.source_id) in set(train.person_ids))
    (tmp_path / "optout.txt").write_text(leaving)
    load_optout(db, tmp_path / "optout.txt", 10)
    db.close()

    (train_after, test_after), after = cached_splits(str(location), spec)

    assert len(extractions) == 2
    held = {*train_after.person_ids, *test_after.person_ids}
    assert ids[leaving] not in held
    assert len(held) == len(train.person_ids) + len(test.person_ids) - 1
    assert after != before
    assert len(list((location.parent / "store.duckdb.splits").iterdir())) == 1, "old file gone"


def test_another_split_of_the_same_store_is_kept_apart(store, extractions):
    location, _ = store
    spec = mace_task()
    other = spec.model_copy(update={"seed": spec.seed + 1})
    (train, _), _ = cached_splits(str(location), spec)
    (other_train, _), _ = cached_splits(str(location), other)
    cached_splits(str(location), spec)

    assert len(extractions) == 2
    assert not np.array_equal(train.person_ids, other_train.person_ids)


def test_only_a_store_file_has_splits_kept(tmp_path):
    location = tmp_path / "store.duckdb"
    assert split_cache.store_file("postgresql+psycopg://flip@db/flip") is None
    assert split_cache.store_file(f"duckdb:///{location}") == location
    assert split_cache.store_file(str(location)) == location
