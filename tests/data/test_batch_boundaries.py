"""Where a run cuts its records into chunks (reading process) and batches (commits): never
between the records of one resource (an Observation's components)."""

from pathlib import Path

import orjson
import pytest

from flip.data.cdm.store import open_store
from flip.data.ingest import ingest_path
from flip.data.ingest.batch import batches
from flip.data.sources import fhir, readahead
from flip.data.sources.fhir_ahead import read_path_ahead

LOINC, UCUM = "http://loinc.org", "http://unitsofmeasure.org"


def _quantity(value: float, unit: str) -> dict:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def _export(folder: Path, simple: int) -> Path:
    """A patient, `simple` one-value Observations, then a blood pressure of two components."""
    folder.mkdir()
    patient = {"resourceType": "Patient", "id": "p", "birthDate": "1970-01-01"}
    (folder / "Patient.ndjson").write_bytes(orjson.dumps(patient) + b"\n")
    common = {
        "resourceType": "Observation",
        "status": "final",
        "subject": {"reference": "Patient/p"},
    }
    common["effectiveDateTime"] = "2020-01-01T10:00:00Z"
    lines = [
        {**common, "id": f"o{i}", "code": {"coding": [{"system": LOINC, "code": "8302-2"}]}}
        | {"valueQuantity": _quantity(150 + i % 10, "cm")}
        for i in range(simple)
    ]
    components = [
        {
            "code": {"coding": [{"system": LOINC, "code": code}]},
            "valueQuantity": _quantity(v, "mm[Hg]"),
        }
        for code, v in (("8480-6", 120), ("8462-4", 80))
    ]
    lines.append(
        {**common, "id": "bp", "code": {"coding": [{"system": LOINC, "code": "85354-9"}]}}
        | {"component": components}
    )
    (folder / "Observation.ndjson").write_bytes(b"\n".join(map(orjson.dumps, lines)) + b"\n")
    return folder


def test_a_batch_never_ends_between_the_components_of_one_observation(tmp_path):
    records = list(fhir.read_path(_export(tmp_path / "in", 2)))
    assert [getattr(r, "key", None) for r in records[-2:]] == [
        "Observation/bp#component[0]",
        "Observation/bp#component[1]",
    ]
    assert [len(b) for b in batches(records, size=4)] == [5]  # not [4, 1]
    assert [len(b) for b in batches(records, size=3)] == [3, 2]


@pytest.mark.skipif(not readahead._can_fork(), reason="this machine cannot fork a reader")
def test_components_read_by_another_process_across_its_chunks_are_all_stored(tmp_path):
    # the reader sends 1,000 records a chunk: the patient, 998 values, then the first
    # component end the first chunk, unless the reader keeps the observation whole
    folder = _export(tmp_path / "in", readahead.CHUNK - 2)
    store = open_store(tmp_path / "s.duckdb")
    store.create()
    report = ingest_path(store, "fhir", folder, reading=read_path_ahead(folder))
    store.close()
    assert report.rows["measurement"] == readahead.CHUNK  # 998 values + 2 components
    assert report.skipped == 0 and report.loaded == readahead.CHUNK + 1  # and the patient
