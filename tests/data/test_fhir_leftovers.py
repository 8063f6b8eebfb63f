"""FHIR shapes a review found still lost: onset and abatement as an age or a period, and
codes sent as text only (issue 18: loaded, quarantined with a reason, or skipped by rule)."""

from datetime import date

from flip.data.ingest import ingest_path
from flip.data.validate.report import build_report
from tests.data.accounting import assert_accounted
from tests.data.stored import rows, write_ndjson

SNOMED, LOINC = "http://snomed.info/sct", "http://loinc.org"
PATIENT = {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1950-10-24"}
SUBJECT = {"reference": "Patient/p1"}


def ingest(store, path, resources):
    """Ingest `resources` as one source (the same one run after run)."""
    return ingest_path(store, "fhir", write_ndjson(path, resources), source_system="ehr")


def age(years):
    return {"value": years, "unit": "years", "system": "http://unitsofmeasure.org", "code": "a"}


def condition(id_, code=None, subject=SUBJECT, **when):
    return {
        "resourceType": "Condition",
        "id": id_,
        "subject": subject,
        "code": code or {"coding": [{"system": SNOMED, "code": "44054006"}]},
        **when,
    }


def test_onset_age_is_a_date_from_birth(store, tmp_path):
    """A Condition with only onsetAge was quarantined as dateless; with the patient's birth
    date known (same batch, or the store on a later run) its onset is the first day of
    that year of age, counted as fhir.onset.age. Without a birth date the old rule holds."""
    resources = [PATIENT, condition("c-age", onsetAge=age(42))]
    report = ingest(store, tmp_path / "a.ndjson", resources)
    assert report.quarantined == 0, report.as_dict()
    assert report.warnings["fhir.onset.age"] == 1, report.as_dict()
    (row,) = rows(store, "condition_occurrence")
    assert row["condition_start_date"] == date(1992, 10, 24)
    assert_accounted(store, report)
    # a later run: the birth date is the stored person's
    later = [condition("c-later", onsetAge=age(60.5))]
    report = ingest(store, tmp_path / "b.ndjson", later)
    assert report.loaded == 1 and report.quarantined == 0, (report.rules, report.as_dict())
    assert report.warnings["fhir.onset.age"] == 1, report.as_dict()
    starts = sorted(r["condition_start_date"] for r in rows(store, "condition_occurrence"))
    assert starts == [date(1992, 10, 24), date(2010, 10, 24)]
    assert_accounted(store, report)
    # an age in other units than years is not read: dateless, as before
    odd = [condition("c-weeks", onsetAge={"value": 3, "unit": "wk", "code": "wk"})]
    report = ingest(store, tmp_path / "c.ndjson", odd)
    assert report.quarantined == 1 and "fhir.onset.age" not in report.warnings
    assert_accounted(store, report)


def test_abatement_fills_the_condition_end_date(store, tmp_path):
    """abatementPeriod (end, else start), abatementAge (as onsetAge) and a partial
    abatementDateTime left condition_end_date empty; a partial end is its last day."""
    start = {"onsetDateTime": "2000-01-02"}
    resources = [
        PATIENT,
        condition(
            "period-end", abatementPeriod={"start": "2001-01-01", "end": "2001-02-03"}, **start
        ),
        condition("period-start", abatementPeriod={"start": "2002-03-04"}, **start),
        condition("by-age", abatementAge=age(55), **start),
        condition("partial", abatementDateTime="2003-05", **start),
        condition("none", **start),
    ]
    report = ingest_path(store, "fhir", write_ndjson(tmp_path / "a.ndjson", resources))
    assert report.quarantined == 0, report.as_dict()
    assert report.warnings["fhir.onset.age"] == 1, report.as_dict()
    by_key = {
        r["condition_occurrence_id"]: r["condition_end_date"]
        for r in rows(store, "condition_occurrence")
    }
    assert len(by_key) == 5
    assert sorted(by_key.values(), key=lambda d: (d is None, d)) == [
        date(2001, 2, 3),
        date(2002, 3, 4),
        date(2003, 5, 31),
        date(2005, 10, 24),
        None,
    ]
    assert_accounted(store, report)


def test_text_only_code_is_an_unmapped_fact(store, tmp_path):
    """A Condition or Observation whose code is only text was quarantined as
    fhir.code.missing; it is a fact with concept 0 and its text as the source value
    (cut to the column), counted as fhir.code.text, and the report lists it unmapped."""
    long_text = "Chronic pain of the lower back radiating to both legs since the fall"
    resources = [
        PATIENT,
        condition("c-text", {"text": long_text}, onsetDateTime="2020-01-02"),
        {
            "resourceType": "Observation",
            "id": "o-text",
            "status": "final",
            "subject": SUBJECT,
            "code": {"text": "Smoker"},
            "effectiveDateTime": "2020-01-02",
            "valueString": "yes",
        },
        condition("c-empty", {"coding": [{"system": SNOMED}]}, onsetDateTime="2020-01-02"),
    ]
    report = ingest_path(store, "fhir", write_ndjson(tmp_path / "a.ndjson", resources))
    assert report.warnings["fhir.code.text"] == 2, report.as_dict()
    assert report.quarantined == 1, report.as_dict()  # no coding code and no text
    (cond,) = rows(store, "condition_occurrence")
    assert cond["condition_concept_id"] == 0
    assert cond["condition_source_value"] == long_text[:50]
    (obs,) = rows(store, "observation")
    assert obs["observation_concept_id"] == 0
    assert obs["observation_source_value"] == "Smoker"
    assert_accounted(store, report)
    data = build_report(store)
    listed = {(u["table"], u["source_value"], u["code_system"]) for u in data["unmapped"]}
    assert ("condition_occurrence", long_text[:50], "unknown") in listed, data["unmapped"]
    assert ("observation", "Smoker", "unknown") in listed, data["unmapped"]
