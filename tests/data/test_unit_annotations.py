"""Units as labs annotate them: a UCUM annotation (`%{HbA1c}`) changes no unit."""

from flip.data.ingest import ingest_path
from flip.data.terminology.units import normalize_unit, unit_concept_id
from tests.data.accounting import assert_accounted
from tests.data.stored import rows, write_ndjson

LOINC = "http://loinc.org"


def test_annotated_and_caret_units_map_to_their_unit_concept(store, tmp_path):
    patient = {"resourceType": "Patient", "id": "p1", "gender": "male", "birthDate": "1950"}

    def result(id_, code, value, unit):
        return {
            "resourceType": "Observation",
            "id": id_,
            "status": "final",
            "code": {"coding": [{"system": LOINC, "code": code}]},
            "subject": {"reference": "Patient/p1"},
            "effectiveDateTime": "2020-01-01T10:00:00Z",
            "valueQuantity": {"value": value, "unit": unit},
        }

    resources = [
        patient,
        result("bmi", "39156-5", 27.5, "kg/m^2"),
        result("glu", "2345-7", 99, "mg/dL{fasting}"),
    ]
    report = ingest_path(store, "fhir", write_ndjson(tmp_path / "u.ndjson", resources))
    units = {r["unit_source_value"]: r["unit_concept_id"] for r in rows(store, "measurement")}
    assert units == {
        "kg/m^2": unit_concept_id("kg/m2"),
        "mg/dL{fasting}": unit_concept_id("mg/dL"),
    }
    assert 0 not in units.values()
    assert_accounted(store, report)


def test_annotations_that_are_units_themselves_stay():
    assert normalize_unit("%{HbA1c}") == "%"
    assert normalize_unit("{ratio}") == "{ratio}"
    assert normalize_unit("mL/min/{1.73_m2}") == "mL/min/{1.73_m2}"
    assert normalize_unit("{score}") is None
