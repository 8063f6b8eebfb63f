"""Every DICOM instance traceable to its series' row; gzip-compressed files read, not lost."""

import gzip
import shutil
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid
from sqlalchemy import select, text

from flip.data.cdm import schema
from flip.data.cdm.store import StoreError, open_store
from flip.data.features.image import pixels
from flip.data.ingest import ingest_path
from tests.data.accounting import assert_accounted
from tests.data.test_dicom import PYDICOM_FILES, _persons_for

#: pydicom's DICOMDIR test tree: real multi-instance CT, MR and CR series of two patients.
SERIES_TREE = PYDICOM_FILES / "dicomdirtests"


def _traced(store) -> dict[str, tuple[str, str | None, str | None]]:
    """Each provenance location -> (series UID of the image_occurrence row it leads to, the
    SOP Instance UID of its image_instance row or None, that row's local_path)."""
    record, series, instance = (
        schema.source_record,
        schema.image_occurrence,
        schema.image_instance,
    )
    with store.connect() as conn:
        standing = conn.execute(
            select(record.c.location, series.c.image_series_uid).join(
                series,
                (record.c.cdm_table == "image_occurrence")
                & (record.c.cdm_id == series.c.image_occurrence_id),
            )
        ).all()
        attached = conn.execute(
            select(
                record.c.location,
                series.c.image_series_uid,
                instance.c.sop_instance_uid,
                instance.c.local_path,
            )
            .join(
                instance,
                (record.c.cdm_table == "image_instance")
                & (record.c.cdm_id == instance.c.image_instance_id),
            )
            .join(series, series.c.image_occurrence_id == instance.c.image_occurrence_id)
        ).all()
    traced = {location: (uid, None, None) for location, uid in standing}
    for location, uid, sop, path in attached:
        assert location not in traced, f"{location} is traced twice"
        traced[location] = (uid, sop, path)
    return traced


def _images(folder: Path) -> dict[str, pydicom.Dataset]:
    """The headers of the files under `folder` that hold pixel data, by path."""
    found = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=False, defer_size=1024)
        except Exception:  # a README, a DICOMDIR that is not an image
            continue
        if "PixelData" in ds and ds.get("Modality") not in ("SR", "KO", "PR"):
            found[str(path)] = ds
    return found


@pytest.mark.parametrize("store", ["duckdb", "postgres"], indirect=True)
def test_every_instance_of_a_real_series_is_traced_to_its_series_row(store, tmp_path):
    images = tmp_path / "dicomdirtests"
    shutil.copytree(SERIES_TREE, images)
    headers = _images(images)
    series = {str(ds.SeriesInstanceUID) for ds in headers.values()}
    assert len(headers) > len(series) > 5, "pydicom's tree has series of several instances"
    _persons_for(store, images)

    report = ingest_path(store, "dicom", images)
    assert_accounted(store, report)
    assert report.rows == {
        "image_occurrence": len(series),
        "image_instance": len(headers) - len(series),
    }
    traced = _traced(store)
    for path, ds in headers.items():
        uid, sop, local = traced[path]
        assert uid == ds.SeriesInstanceUID, path
        if sop is not None:
            assert (sop, local) == (ds.SOPInstanceUID, str(Path(path).resolve()))
    assert report.quarantined + report.skipped == report.read - len(headers)

    again = ingest_path(store, "dicom", images)
    assert_accounted(store, again)
    assert (again.loaded, again.unchanged) == (0, len(headers))

    ct = images / "77654033" / "CT2"
    added = pydicom.dcmread(ct / "17106")
    added.SOPInstanceUID = added.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    added.save_as(ct / "99999")
    later = ingest_path(store, "dicom", images)
    assert_accounted(store, later)
    assert (later.loaded, later.unchanged) == (1, len(headers)), "the new slice is loaded"
    assert _traced(store)[str(ct / "99999")][:2] == (added.SeriesInstanceUID, added.SOPInstanceUID)


def test_a_new_first_file_stands_for_its_series_and_the_old_one_attaches(store, tmp_path):
    images = tmp_path / "images"
    shutil.copytree(SERIES_TREE / "77654033" / "CT2", images)
    _persons_for(store, images)
    ingest_path(store, "dicom", images)
    first = pydicom.dcmread(images / "17106")
    first.SOPInstanceUID = first.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    first.save_as(images / "00000")

    again = ingest_path(store, "dicom", images)
    assert_accounted(store, again)
    assert (again.loaded, again.unchanged) == (2, 3), "the series row changes, 17106 attaches"
    traced = _traced(store)
    assert traced[str(images / "00000")][1] is None, "the new first file stands for the series"
    assert traced[str(images / "17106")][1] == pydicom.dcmread(images / "17106").SOPInstanceUID
    with store.connect() as conn:
        paths = conn.execute(select(schema.image_occurrence.c.local_path)).scalars().all()
    assert paths == [str((images / "00000").resolve())]


@pytest.mark.parametrize("store", ["duckdb", "postgres"], indirect=True)
def test_when_a_series_first_file_is_removed_the_next_stands_for_it_once(store, tmp_path):
    images = tmp_path / "images"
    shutil.copytree(SERIES_TREE / "77654033" / "CT2", images)
    _persons_for(store, images)
    ingest_path(store, "dicom", images)
    (images / "17106").unlink()

    again = ingest_path(store, "dicom", images)
    assert_accounted(store, again)
    traced = _traced(store)  # fails when a file is traced as its series and as an instance
    assert sorted(Path(p).name for p in traced) == ["17136", "17166", "17196"]
    assert traced[str(images / "17136")][1] is None, "the next file stands for the series"
    with store.connect() as conn:
        instances = conn.execute(select(schema.image_instance.c.local_path)).scalars().all()
    assert sorted(Path(p).name for p in instances) == ["17166", "17196"]


def test_a_second_file_of_the_same_instance_is_skipped_by_rule(store, tmp_path):
    images = tmp_path / "images"
    source = SERIES_TREE / "77654033" / "CT2"
    shutil.copytree(source, images / "a")
    shutil.copy(source / "17136", images / "b-copy")
    _persons_for(store, images)

    report = ingest_path(store, "dicom", images)
    assert_accounted(store, report)
    assert (report.read, report.loaded) == (5, 4)
    assert report.skipped_rules == {"dicom.instance_repeated": 1}


@pytest.mark.parametrize("store", ["duckdb", "postgres"], indirect=True)
def test_gzip_compressed_files_are_read_and_a_broken_one_is_quarantined(store, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(PYDICOM_FILES / "zipMR.gz", images / "a-zipMR.gz")  # pydicom's own
    ct = (PYDICOM_FILES / "CT_small.dcm").read_bytes()
    (images / "b-ct.dcm.gz").write_bytes(gzip.compress(ct))
    cr = (SERIES_TREE / "77654033" / "CR1" / "6154").read_bytes()
    (images / "c-no-suffix.dcm").write_bytes(gzip.compress(cr))
    cut = gzip.compress((SERIES_TREE / "77654033" / "CR2" / "6247").read_bytes())
    (images / "d-cut.dcm.gz").write_bytes(cut[: len(cut) // 2])
    (images / "e-notes.txt.gz").write_bytes(gzip.compress(b"not an image"))
    _persons_for(store, PYDICOM_FILES)

    report = ingest_path(store, "dicom", images)
    assert_accounted(store, report)
    assert (report.read, report.loaded) == (5, 3), report.as_dict()
    assert report.rules == {"dicom.unreadable": 2}
    with store.connect() as conn:
        paths = conn.execute(select(schema.image_occurrence.c.local_path)).scalars().all()
        messages = dict(
            conn.execute(select(schema.quarantine.c.location, schema.quarantine.c.message)).all()
        )
    assert sorted(Path(p).name for p in paths) == ["a-zipMR.gz", "b-ct.dcm.gz", "c-no-suffix.dcm"]
    for path in paths:
        assert pixels(path, 8).shape == (1, 8, 8), "a task reads the compressed file's pixels"
    assert messages[str(images / "e-notes.txt.gz")].startswith("gzip-compressed: not a DICOM")
    assert "gzip-compressed" in messages[str(images / "d-cut.dcm.gz")]


def test_a_store_of_schema_5_gains_the_instance_table(tmp_path):
    path = tmp_path / "old.duckdb"
    old = open_store(path)
    old.create()
    with old.begin() as conn:
        conn.execute(text("DROP TABLE image_instance"))
        conn.execute(text("UPDATE flip_schema SET version = 5"))
    old.close()
    store = open_store(path)
    with pytest.raises(StoreError, match="schema version 5"):
        store.check()
    store.create()
    store.check()
    images = tmp_path / "images"
    shutil.copytree(SERIES_TREE / "77654033" / "CT2", images)
    _persons_for(store, images)
    report = ingest_path(store, "dicom", images)
    assert_accounted(store, report)
    assert report.rows == {"image_occurrence": 1, "image_instance": 3}
    store.close()
