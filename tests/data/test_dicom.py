"""DICOM files -> image_occurrence: headers only, patients by MRN, bad files quarantined."""

import pydicom
from pydicom.uid import generate_uid
from sqlalchemy import func, select

from flip.data.cdm import schema
from flip.data.ingest import ingest_path


def _count(store, table) -> int:
    with store.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def test_images_join_their_patients_and_bad_files_are_quarantined(store, exported):
    _, patients, folder = exported("csv", n=12)
    ingest_path(store, "csv", folder)
    images = folder / "dicom"
    (images / "notes.txt").write_text("not an image")
    stranger = pydicom.dcmread(images / f"{patients[0].source_id}.dcm")
    stranger.PatientID = "NOBODY"
    stranger.SeriesInstanceUID = generate_uid()
    stranger.save_as(images / "stranger.dcm")
    undated = pydicom.dcmread(images / f"{patients[1].source_id}.dcm")
    del undated.StudyDate
    undated.SeriesInstanceUID = generate_uid()
    (images / "nested").mkdir()
    undated.save_as(images / "nested" / "undated.dcm")

    report = ingest_path(store, "dicom", images)
    assert report.rules == {
        "dicom.unreadable": 1,
        "reference.dangling": 1,
        "dicom.tag_missing": 1,
    }
    assert report.rows["image_occurrence"] == len(patients)
    with store.connect() as conn:
        rows = conn.execute(
            select(schema.image_occurrence.c.local_path, schema.person.c.person_source_value).join(
                schema.person, schema.person.c.person_id == schema.image_occurrence.c.person_id
            )
        ).all()
        messages = dict(
            conn.execute(select(schema.quarantine.c.rule, schema.quarantine.c.message)).all()
        )
    assert {source for _, source in rows} == {p.source_id for p in patients}
    assert all(path.endswith(f"{source}.dcm") for path, source in rows)
    assert "mrn:NOBODY" in messages["reference.dangling"]
    assert "StudyDate" in messages["dicom.tag_missing"]

    again = ingest_path(store, "dicom", images)
    assert again.loaded == 0 and again.unchanged == len(patients)
    assert _count(store, schema.image_occurrence) == len(patients)
