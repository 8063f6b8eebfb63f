"""Partial FHIR dates (`2015`, `2015-06`), as problem lists and histories send them."""

from datetime import date

from flip.data.ingest import ingest_path
from flip.data.sources.fhir_dates import partial_day
from tests.data.accounting import assert_accounted
from tests.data.stored import rows, write_ndjson

SNOMED = "http://snomed.info/sct"


def condition(id_, **when):
    return {
        "resourceType": "Condition",
        "id": id_,
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": SNOMED, "code": "44054006"}]},
        **when,
    }


def test_partial_dates_are_their_first_day_and_a_death_its_last(store, tmp_path):
    """An onset of `2015` was quarantined as dateless, and one of `2015-06` beside a
    recordedDate of 2019 took the 2019 date (four years off); a partial death date lost
    the death. Each now keeps what it says, counted under fhir.date.partial: an event its
    first day, a death its last (no event of that month falls after it)."""
    resources = [
        {
            "resourceType": "Patient",
            "id": "p1",
            "gender": "male",
            "birthDate": "1950-01-01",
            "deceasedDateTime": "2021-03",
        },
        condition("year", onsetDateTime="2015"),
        condition("month", onsetDateTime="2015-06", recordedDate="2019-01-01"),
        {
            "resourceType": "Procedure",
            "id": "appendix",
            "status": "completed",
            "subject": {"reference": "Patient/p1"},
            "code": {"coding": [{"system": SNOMED, "code": "80146002"}]},
            "performedDateTime": "1980",
        },
    ]
    report = ingest_path(store, "fhir", write_ndjson(tmp_path / "x.ndjson", resources))
    assert report.quarantined == 0, report.as_dict()
    assert report.warnings == {"fhir.date.partial": 4}, report.as_dict()
    (death,) = rows(store, "death")
    assert death["death_date"] == date(2021, 3, 31)
    starts = sorted(c["condition_start_date"] for c in rows(store, "condition_occurrence"))
    assert starts == [date(2015, 1, 1), date(2015, 6, 1)]
    (procedure,) = rows(store, "procedure_occurrence")
    assert procedure["procedure_date"] == date(1980, 1, 1)
    assert_accounted(store, report)


def test_partial_day_reads_only_partial_dates():
    assert partial_day("2020") == date(2020, 1, 1)
    assert partial_day("2020", last=True) == date(2020, 12, 31)
    assert partial_day("2020-02", last=True) == date(2020, 2, 29)
    assert partial_day("9999", last=True) == date(9999, 1, 1)  # never past its first day
    assert [partial_day(v) for v in ("2020-13", "2020-01-02", "20", None, 2020)] == [None] * 5
