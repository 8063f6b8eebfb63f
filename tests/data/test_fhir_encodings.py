"""FHIR files as Windows tools write them: UTF-16, or lines holding Windows-1252 bytes."""

import gzip

import orjson
import pytest

from flip.data.ingest import ingest_path
from tests.data.accounting import assert_accounted
from tests.data.stored import rows

PATIENTS = [
    {
        "resourceType": "Patient",
        "id": "p1",
        "gender": "male",
        "birthDate": "1950-01-01",
        "name": [{"family": "Müller"}],
    },
    {"resourceType": "Patient", "id": "p2", "gender": "female", "birthDate": "1960-01-01"},
]


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-le"])
def test_utf16_ndjson_and_bundle_load(store, tmp_path, codec):
    """PowerShell's Out-File writes UTF-16 (with a BOM; `utf-16-le` without one): every
    line was malformed JSON and every record quarantined."""
    folder = tmp_path / "export"
    folder.mkdir()
    lines = "\r\n".join(orjson.dumps(p).decode() for p in PATIENTS) + "\r\n"
    (folder / "Patient.ndjson").write_bytes(lines.encode(codec))
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": dict(p, id=p["id"] + "b")} for p in PATIENTS],
    }
    (folder / "bundle.json.gz").write_bytes(
        gzip.compress(orjson.dumps(bundle).decode().encode(codec))
    )
    report = ingest_path(store, "fhir", folder)
    assert report.quarantined == 0, report.as_dict()
    assert len(rows(store, "person")) == 4
    assert_accounted(store, report)


def test_a_line_in_windows_1252_loads_with_a_warning(store, tmp_path):
    lines = b"\n".join(orjson.dumps(p).decode().encode("cp1252") for p in PATIENTS)
    (tmp_path / "p.ndjson").write_bytes(lines + b"\n{not json\xe9}\n")
    report = ingest_path(store, "fhir", tmp_path / "p.ndjson")
    assert report.warnings == {"json.text_not_utf8": 1}, report.as_dict()
    assert report.rules == {"json.malformed": 1}
    assert len(rows(store, "person")) == 2
    assert_accounted(store, report)
