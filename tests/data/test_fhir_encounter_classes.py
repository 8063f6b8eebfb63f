"""FHIR Encounter classes beyond AMB/IMP/EMER map to OMOP Visit concepts; unknown ones stay 0."""

from flip.data.ingest import ingest_path
from flip.data.terminology import load_athena, starter_folder
from flip.data.terminology.visits import VISIT_CLASSES
from flip.data.validate.quality import run_checks
from tests.data.accounting import assert_accounted
from tests.data.stored import rows, write_ndjson

ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
PATIENT = {"resourceType": "Patient", "id": "p1", "gender": "male", "birthDate": "1950-10-24"}


def encounter(id_: str, klass: object, day: int) -> dict:
    return {
        "resourceType": "Encounter",
        "id": id_,
        "status": "finished",
        "class": klass,
        "subject": {"reference": "Patient/p1"},
        "period": {"start": f"2021-05-{day:02d}T09:00:00", "end": f"2021-05-{day:02d}T10:00:00"},
    }


#: (class as sent, the Visit concept OMOP ETLs give it)
CLASSES = [
    ({"system": ACT, "code": "HH"}, 581476),
    ({"system": ACT, "code": "VR"}, 5083),
    ({"system": ACT, "code": "OBSENC"}, 262),
    ({"system": ACT, "code": "ACUTE"}, 9201),
    ({"system": ACT, "code": "NONAC"}, 9201),
    ([{"coding": [{"system": ACT, "code": "VR"}]}], 5083),  # R5: a list of CodeableConcepts
    ("home", 581476),  # DSTU2: a plain code of http://hl7.org/fhir/encounter-class
    ({"system": "http://hl7.org/fhir/encounter-class", "code": "inpatient"}, 9201),
]
UNKNOWN = ["SS", "PRENC", "FLD", "XYZ"]


def test_encounter_classes_map_to_visit_concepts(store, tmp_path):
    load_athena(store, starter_folder())
    known = [encounter(f"k{i}", klass, i + 1) for i, (klass, _) in enumerate(CLASSES)]
    unknown = [
        encounter(f"u{i}", {"system": ACT, "code": code}, 20 + i) for i, code in enumerate(UNKNOWN)
    ]
    path = write_ndjson(tmp_path / "e.ndjson", [PATIENT, *known, *unknown])
    report = ingest_path(store, "fhir", path)
    assert report.quarantined == 0, report.rules
    by_day = {r["visit_start_date"].day: r for r in rows(store, "visit_occurrence")}
    for i, (_, concept) in enumerate(CLASSES):
        assert by_day[i + 1]["visit_concept_id"] == concept, CLASSES[i]
    for i, code in enumerate(UNKNOWN):
        assert by_day[20 + i]["visit_concept_id"] == 0
        assert by_day[20 + i]["visit_source_value"] == code
    assert report.warnings["fhir.Encounter.class.unmapped"] == len(UNKNOWN)
    assert report.warnings["fhir.Encounter.class.r5"] == 1
    assert report.warnings["fhir.Encounter.class.code"] == 1
    checks = {c.name: c for c in run_checks(store)}
    assert checks["conformance.concept_id_in_vocabulary.visit_occurrence"].failed == 0
    assert_accounted(store, report)


def test_every_visit_concept_is_in_the_starter_vocabulary(store):
    load_athena(store, starter_folder())
    from sqlalchemy import select

    from flip.data.cdm import schema

    with store.connect() as conn:
        found = conn.execute(
            select(schema.concept.c.concept_id, schema.concept.c.domain_id).where(
                schema.concept.c.concept_id.in_(set(VISIT_CLASSES.values()))
            )
        ).all()
    assert {row.concept_id for row in found} == set(VISIT_CLASSES.values())
    assert {row.domain_id for row in found} == {"Visit"}
