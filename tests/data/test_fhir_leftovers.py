"""FHIR shapes a review found still lost: onset and abatement as an age or a period
(issue 18: loaded, quarantined with a reason, or skipped by rule)."""

from datetime import date

from flip.data.ingest import ingest_path
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
    abatementDateTime left condition_end_date empty."""
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
        date(2003, 5, 1),
        date(2005, 10, 24),
        None,
    ]
    assert_accounted(store, report)
