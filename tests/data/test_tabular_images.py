"""Image files listed in a table (a JPEG manifest) -> image_occurrence rows pointing at them."""

from pathlib import Path

import pytest
import yaml
from PIL import Image
from sqlalchemy import select

from flip.data.cdm import schema
from flip.data.ingest import ingest_path
from flip.data.sources.tabular_mapping import MappingError, TableMapping
from tests.data.accounting import assert_accounted

_MANIFEST = """photo_id,patient_ref,taken,file,body_site
P1,A1,2021-03-04,IMG_1.jpg,ARM
P2,A1,2021-06-30,IMG_2.jpg,LEG
P3,A2,2021-03-05,IMG_gone.jpg,TRUNK
P4,A2,2021-03-05,,TRUNK
"""


def _extract(folder: Path) -> Path:
    (folder / "photos").mkdir(parents=True)
    (folder / "patients.csv").write_text("patient_ref,dob,sex\nA1,1970-01-02,F\nA2,1981-05-06,M\n")
    (folder / "photos" / "manifest.csv").write_text(_MANIFEST)
    for name in ("IMG_1.jpg", "IMG_2.jpg"):
        Image.new("RGB", (8, 8), (200, 120, 100)).save(folder / "photos" / name)
    mapping = {
        "person": {"file": "patients.csv", "id": "patient_ref", "birth_date": {"column": "dob"}},
        "events": [
            {
                "file": "photos/manifest.csv",
                "id": "photo_id",
                "person": "patient_ref",
                "code": {"value": "XC", "system": "http://dicom.nema.org/resources/ontology/DCM"},
                "date": {"column": "taken"},
                "image": {"path": "file", "study": "body_site"},
                "default_table": "image_occurrence",
            }
        ],
    }
    (folder / "mapping.yaml").write_text(yaml.safe_dump(mapping))
    return folder / "mapping.yaml"


def test_a_manifest_row_becomes_an_image_pointing_at_its_file_or_says_why_not(store, tmp_path):
    mapping = _extract(tmp_path / "extract")
    report = ingest_path(store, "csv", mapping.parent)
    assert_accounted(store, report)
    assert report.rules == {"tabular.image.file_missing": 1, "tabular.image.path_missing": 1}
    images = schema.image_occurrence
    with store.connect() as conn:
        rows = conn.execute(
            select(
                images.c.local_path, images.c.image_study_uid, images.c.image_occurrence_date
            ).order_by(images.c.image_occurrence_date)
        ).all()
    photos = tmp_path / "extract" / "photos"
    assert [(Path(r[0]), r[1], r[2].isoformat()) for r in rows] == [
        ((photos / "IMG_1.jpg").resolve(), "ARM", "2021-03-04"),
        ((photos / "IMG_2.jpg").resolve(), "LEG", "2021-06-30"),
    ]
    again = ingest_path(store, "csv", mapping.parent)
    assert again.loaded == 0 and again.unchanged == 4


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda e: e.pop("image"), "an image_occurrence entry needs `image: {path: COLUMN}`"),
        (lambda e: e.update(default_table="measurement"), "no other entry has one"),
        (lambda e: e.update(image={"path": "file", "size": "x"}), "image.size"),
    ],
)
def test_an_image_entry_is_checked_when_the_mapping_is_read(tmp_path, change, message):
    mapping = _extract(tmp_path / "extract")
    doc = yaml.safe_load(mapping.read_text())
    change(doc["events"][0])
    mapping.write_text(yaml.safe_dump(doc))
    with pytest.raises(MappingError) as raised:
        TableMapping.load(mapping)
    assert "image" in str(raised.value) and message in str(raised.value)
