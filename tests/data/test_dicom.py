"""DICOM files -> image_occurrence: headers only, patients by MRN, every file accounted for."""

import contextlib
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import DeflatedExplicitVRLittleEndian, generate_uid
from sqlalchemy import func, insert, select

from flip.data.cdm import schema
from flip.data.ingest import ingest_path
from flip.data.sources.dicom import sop_class_uid
from flip.data.sources.dicom_classes import non_image_rule
from tests.data.accounting import assert_accounted

#: pydicom's own test files, bundled in its wheel (MIT licence): independent DICOM data.
PYDICOM_FILES = Path(get_testdata_file("CT_small.dcm")).parent

#: SOP Class UIDs of the non-image objects a PACS export carries beside its images.
NON_IMAGES = {
    "1.2.840.10008.5.1.4.1.1.11.1": "presentation_state",
    "1.2.840.10008.5.1.4.1.1.88.59": "key_object_selection",
    "1.2.840.10008.5.1.4.1.1.104.1": "encapsulated_document",
    "1.2.840.10008.5.1.4.1.1.9.1.1": "waveform",
    "1.2.840.10008.5.1.4.1.1.88.33": "structured_report",
    "1.2.840.10008.5.1.4.1.1.481.5": "rt_plan",
}


def _count(store, table) -> int:
    with store.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def _image_rows(store) -> list[tuple[str, str, str]]:
    """(series uid, local path, patient source value) of every image_occurrence row."""
    image, person = schema.image_occurrence, schema.person
    with store.connect() as conn:
        return conn.execute(
            select(image.c.image_series_uid, image.c.local_path, person.c.person_source_value)
            .join(person, person.c.person_id == image.c.person_id)
            .order_by(image.c.image_series_uid)
        ).all()


def _instance(source: Path, target: Path, **changes) -> None:
    """Copy a DICOM file as a new instance (new SOP Instance UID) with `changes` applied."""
    ds = pydicom.dcmread(source)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    for keyword, value in changes.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    target.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(target)


def test_images_join_their_patients_and_bad_files_are_quarantined(store, exported):
    _, patients, folder = exported("csv", n=12)
    ingest_path(store, "csv", folder)
    images = folder / "dicom"
    (images / "notes.txt").write_text("not an image")
    first = images / f"{patients[0].source_id}.dcm"
    _instance(first, images / "stranger.dcm", PatientID="NOBODY", SeriesInstanceUID=generate_uid())
    undated = images / "nested" / "undated.dcm"
    second = images / f"{patients[1].source_id}.dcm"
    _instance(second, undated, StudyDate=None, SeriesInstanceUID=generate_uid())

    report = ingest_path(store, "dicom", images)
    assert_accounted(store, report)
    assert report.rules == {
        "dicom.unreadable": 1,
        "reference.dangling": 1,
        "dicom.tag_missing": 1,
    }
    assert report.rows["image_occurrence"] == len(patients)
    rows = _image_rows(store)
    with store.connect() as conn:
        messages = dict(
            conn.execute(select(schema.quarantine.c.rule, schema.quarantine.c.message)).all()
        )
    assert {source for *_, source in rows} == {p.source_id for p in patients}
    assert all(path.endswith(f"{source}.dcm") for _, path, source in rows)
    assert "mrn:NOBODY" in messages["reference.dangling"]
    assert "StudyDate" in messages["dicom.tag_missing"]
    assert "not a DICOM file" in messages["dicom.unreadable"]

    again = ingest_path(store, "dicom", images)
    assert_accounted(store, again)
    assert again.loaded == 0 and again.unchanged == len(patients)
    assert _count(store, schema.image_occurrence) == len(patients)


def test_a_series_is_one_row_whose_representative_is_readable(store, exported):
    _, patients, folder = exported("csv", n=3)
    ingest_path(store, "csv", folder)
    images = folder / "dicom"
    source = images / f"{patients[0].source_id}.dcm"
    series = pydicom.dcmread(source).SeriesInstanceUID
    (images / "0-cut-short.dcm").write_bytes(source.read_bytes()[:-100])
    (images / "0-header-only.dcm").write_bytes(source.read_bytes()[:300])
    for n in range(3):
        _instance(source, images / "series" / f"slice{n}.dcm", InstanceNumber=n + 2)
    _instance(source, images / "series" / "other.dcm", PatientID=patients[1].source_id)

    report = ingest_path(store, "dicom", images)
    assert_accounted(store, report)
    assert report.read == 3 + 2 + 3 + 1, "every file is read and counted once"
    assert (report.loaded, report.skipped) == (3 + 3, 0), "the slices attach to their series"
    assert report.rules == {
        "dicom.pixel_data_truncated": 1,
        "dicom.pixel_data_missing": 1,
        "dicom.series_conflict": 1,
    }
    with store.connect() as conn:
        quarantined = dict(
            conn.execute(select(schema.quarantine.c.location, schema.quarantine.c.rule)).all()
        )
    assert quarantined == {
        str(images / "0-cut-short.dcm"): "dicom.pixel_data_truncated",
        str(images / "0-header-only.dcm"): "dicom.pixel_data_missing",
        str(images / "series" / "other.dcm"): "dicom.series_conflict",
    }
    assert report.rows == {"image_occurrence": 3, "image_instance": 3}
    paths = {uid: path for uid, path, _ in _image_rows(store)}
    assert paths[series] == str(source.resolve()), "the first readable file stands for it"
    assert "PixelData" in pydicom.dcmread(paths[series])

    again = ingest_path(store, "dicom", images)
    assert_accounted(store, again)
    assert (again.loaded, again.unchanged, again.skipped) == (0, 6, 0)


def test_non_image_objects_are_skipped_by_their_sop_class(store, exported):
    _, patients, folder = exported("csv", n=2)
    ingest_path(store, "csv", folder)
    images = folder / "dicom"
    source = images / f"{patients[0].source_id}.dcm"
    for n, (uid, _) in enumerate(NON_IMAGES.items()):
        _instance(
            source,
            images / "objects" / f"{n}.dcm",
            SOPClassUID=uid,
            SeriesInstanceUID=generate_uid(),
            Modality="OT",
            PixelData=None,
        )

    report = ingest_path(store, "dicom", images)
    assert_accounted(store, report)
    assert report.skipped_rules == {f"dicom.non_image.{kind}": 1 for kind in NON_IMAGES.values()}
    assert report.rows["image_occurrence"] == len(patients), "only the radiographs are images"
    assert report.quarantined == 0


def test_a_missing_or_bad_study_date_falls_back_with_a_warning(store, exported):
    _, patients, folder = exported("csv", n=2)
    ingest_path(store, "csv", folder)
    images = folder / "dicom"
    first, second = (images / f"{p.source_id}.dcm" for p in patients)
    _instance(first, first, StudyDate=None, ContentDate="20200102")
    _instance(second, second, StudyDate="2020-13-45", SeriesDate="20200304")

    report = ingest_path(store, "dicom", images)
    assert_accounted(store, report)
    assert report.loaded == 2 and report.quarantined == 0
    assert report.warnings == {"dicom.study_date_missing": 1, "dicom.study_date_invalid": 1}
    with store.connect() as conn:
        dates = conn.execute(select(schema.image_occurrence.c.image_occurrence_date)).scalars()
        assert sorted(str(d) for d in dates) == ["2020-01-02", "2020-03-04"]


def _persons_for(store, folder: Path) -> None:
    """A person (born 1900) for every PatientID the DICOM files under `folder` name."""
    ids = set()
    for path in folder.rglob("*"):
        with contextlib.suppress(Exception):  # a non-DICOM file names no patient
            ids.add(str(pydicom.dcmread(path, stop_before_pixels=True).get("PatientID", "")))
    rows = [
        {
            "person_id": n,
            "person_source_value": pid.strip(),
            "gender_concept_id": 0,
            "year_of_birth": 1900,
            "race_concept_id": 0,
            "ethnicity_concept_id": 0,
        }
        for n, pid in enumerate(sorted(i for i in ids if i.strip()), start=1)
    ]
    with store.begin() as conn:
        conn.execute(insert(schema.person), rows)


@pytest.mark.parametrize("store", ["duckdb", "postgres"], indirect=True)
def test_every_bundled_pydicom_test_file_is_accounted_for(store):
    files = [p for p in PYDICOM_FILES.rglob("*") if p.is_file() and not p.name.startswith(".")]
    _persons_for(store, PYDICOM_FILES)

    report = ingest_path(store, "dicom", PYDICOM_FILES)
    assert_accounted(store, report)
    assert report.read == len(files), "every file is loaded, skipped or quarantined"
    assert set(report.rules) <= {
        "dicom.unreadable",
        "dicom.tag_missing",
        "dicom.date_invalid",
        "dicom.pixel_data_missing",
        "dicom.pixel_data_truncated",
    }
    for kind in ("rt_plan", "rt_dose", "rt_structure_set", "structured_report", "waveform"):
        assert report.skipped_rules[f"dicom.non_image.{kind}"] >= 1, kind
    assert report.skipped_rules["dicom.non_image.media_directory"] >= 1, "DICOMDIR is an index"
    with store.connect() as conn:
        unreadable = set(
            conn.execute(
                select(schema.quarantine.c.location).where(
                    schema.quarantine.c.rule == "dicom.unreadable"
                )
            ).scalars()
        )
    assert {Path(p).name for p in unreadable} >= {"README.txt", "test1.json", "crayons.icc"}
    assert report.skipped_rules["dicom.instance_repeated"] >= 1, "MR_small in other syntaxes"
    rows = _image_rows(store)
    assert len(rows) == report.rows["image_occurrence"] > 20
    assert report.loaded == len(rows) + report.rows["image_instance"]
    for _, path, _ in rows:
        ds = pydicom.dcmread(path)
        assert (
            "PixelData" in ds and non_image_rule(sop_class_uid(ds), ds.get("Modality", "")) is None
        )

    again = ingest_path(store, "dicom", PYDICOM_FILES)
    assert_accounted(store, again)
    assert again.loaded == 0 and again.unchanged == report.loaded
    assert again.skipped_rules == report.skipped_rules


def _copy(name: str, target: Path, **changes) -> Path:
    """A pydicom test file copied as a new instance with `changes` applied."""
    _instance(Path(get_testdata_file(name)), target, **changes)
    return target


@pytest.mark.skipif(not Path("/proc/self/mem").exists(), reason="needs Linux /proc")
def test_a_file_that_cannot_be_opened_or_read_is_quarantined_and_the_run_goes_on(store, tmp_path):
    images = tmp_path / "images"
    _copy("CT_small.dcm", images / "a.dcm")
    (images / "b-unreadable.dcm").symlink_to("/proc/self/mem")  # EIO on read, even as root
    (images / "c-broken-link.dcm").symlink_to(tmp_path / "gone.dcm")
    (images / "d-empty.dcm").write_bytes(b"")
    _persons_for(store, images)

    report = ingest_path(store, "dicom", images)
    assert_accounted(store, report)
    assert report.read == 4 and report.loaded == 1
    assert report.rules == {"dicom.unreadable": 3}
    with store.connect() as conn:
        messages = dict(
            conn.execute(select(schema.quarantine.c.location, schema.quarantine.c.message)).all()
        )
    assert "Input/output error" in messages[str(images / "b-unreadable.dcm")]
    assert "broken symbolic link" in messages[str(images / "c-broken-link.dcm")]
    assert "empty file" in messages[str(images / "d-empty.dcm")]


def test_files_under_a_linked_folder_are_read_once_and_a_link_loop_ends(store, tmp_path):
    elsewhere = tmp_path / "archive" / "series"
    _copy("MR_small.dcm", elsewhere / "1.dcm")
    images = tmp_path / "images"
    _copy("CT_small.dcm", images / "a.dcm")
    (images / "linked").symlink_to(elsewhere, target_is_directory=True)
    (images / "linked-again").symlink_to(elsewhere, target_is_directory=True)
    (images / "loop").symlink_to(images, target_is_directory=True)
    _persons_for(store, tmp_path)

    report = ingest_path(store, "dicom", images)
    assert_accounted(store, report)
    assert (report.read, report.loaded, report.quarantined) == (2, 2, 0), report.as_dict()
    assert report.unread == {
        str(images / "linked-again"): f"the same folder as {images / 'linked'}",
        str(images / "loop"): f"the same folder as {images}",
    }


def test_a_deflated_file_stands_for_its_series_and_a_cut_one_is_quarantined(store, tmp_path):
    images = tmp_path / "images"
    deflated = _copy("image_dfl.dcm", images / "a.dcm", PatientID="DFL", StudyDate="20200101")
    assert pydicom.dcmread(deflated).file_meta.TransferSyntaxUID == DeflatedExplicitVRLittleEndian
    whole = deflated.read_bytes()
    cut = _copy("image_dfl.dcm", images / "b.dcm", SeriesInstanceUID=generate_uid())
    cut.write_bytes(cut.read_bytes()[: len(whole) // 2])
    _persons_for(store, images)

    report = ingest_path(store, "dicom", images)
    assert_accounted(store, report)
    assert (report.loaded, report.rules) == (1, {"dicom.unreadable": 1}), report.as_dict()


@pytest.mark.parametrize("store", ["duckdb", "postgres"], indirect=True)
def test_a_uid_longer_than_dicom_allows_is_quarantined_on_every_store(store, tmp_path):
    images = tmp_path / "images"
    long_uid = "1.2." + "3" * 300
    _copy("CT_small.dcm", images / "a.dcm", SeriesInstanceUID=long_uid)
    _copy("CT_small.dcm", images / "b.dcm", StudyInstanceUID=long_uid, PatientID="")
    _copy("CT_small.dcm", images / "c.dcm", SeriesInstanceUID=generate_uid())
    _persons_for(store, images)

    report = ingest_path(store, "dicom", images)
    assert_accounted(store, report)
    assert (report.loaded, report.rules) == (1, {"dicom.uid_invalid": 2}), report.as_dict()
    with store.connect() as conn:
        messages = list(conn.execute(select(schema.quarantine.c.message)).scalars())
    assert all("longer than 64" in m for m in messages), messages


def test_a_moved_folder_points_its_series_at_the_new_place(store, tmp_path):
    images = tmp_path / "old" / "dicom"
    _copy("CT_small.dcm", images / "a.dcm")
    _persons_for(store, images)
    ingest_path(store, "dicom", images)
    moved = tmp_path / "new" / "dicom"
    moved.parent.mkdir()
    images.rename(moved)

    again = ingest_path(store, "dicom", moved)
    assert_accounted(store, again)
    assert (again.loaded, again.unchanged) == (1, 0)
    assert [path for _, path, _ in _image_rows(store)] == [str((moved / "a.dcm").resolve())]


def test_a_series_uid_reused_by_another_study_is_a_conflict_not_a_skip(store, tmp_path):
    images = tmp_path / "images"
    first = _copy("CT_small.dcm", images / "a.dcm")
    series = pydicom.dcmread(first).SeriesInstanceUID
    _copy("CT_small.dcm", images / "b.dcm", StudyInstanceUID=generate_uid())
    _persons_for(store, images)

    report = ingest_path(store, "dicom", images)
    assert_accounted(store, report)
    assert (report.loaded, report.skipped, report.rules) == (1, 0, {"dicom.series_conflict": 1})
    with store.connect() as conn:
        message = conn.execute(select(schema.quarantine.c.message)).scalar_one()
    assert f"series {series} belongs to study" in message
