"""Date-times as exporters write them outside FHIR's pattern keep their record and time."""

from datetime import datetime

import pytest

from flip.data.ingest import ingest_path
from flip.data.sources.fhir_dates import REPAIRED, repair
from tests.data.accounting import assert_accounted
from tests.data.stored import rows, write_ndjson

LOINC = "http://loinc.org"
PATIENT = {"resourceType": "Patient", "id": "p1", "gender": "male", "birthDate": "1950-01-01"}


def pulse(id_: str, when: str) -> dict:
    return {
        "resourceType": "Observation",
        "id": id_,
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "8867-4"}]},
        "subject": {"reference": "Patient/p1"},
        "encounter": {"reference": "Encounter/e1"},
        "effectiveDateTime": when,
        "valueQuantity": {"value": 70, "unit": "/min", "code": "/min"},
    }


def test_lenient_datetimes_keep_the_record_and_its_time_of_day(store, tmp_path):
    """No offset, no seconds, a space for `T`, an offset without colon: each is plain local
    time, kept as such (the offset is dropped as for any FHIR time), with a counted warning,
    where the strict pattern dropped the element and quarantined the record as dateless."""
    encounter = {
        "resourceType": "Encounter",
        "id": "e1",
        "status": "finished",
        "class": {"code": "AMB"},
        "subject": {"reference": "Patient/p1"},
        "period": {"start": "2019-02-03T09:10:00", "end": "2019-02-03 09:50"},
    }
    resources = [
        PATIENT,
        encounter,
        pulse("no-offset", "2019-02-03T09:15:00"),
        pulse("no-seconds", "2019-02-03T09:16Z"),
        pulse("space", "2019-02-03 09:17:00"),
        pulse("bare-offset", "2019-02-03T09:18:00+0100"),
        pulse("strict", "2019-02-03T09:19:00-05:00"),
    ]
    report = ingest_path(store, "fhir", write_ndjson(tmp_path / "x.ndjson", resources))
    assert report.quarantined == 0, report.as_dict()
    assert report.warnings == {REPAIRED: 5}, report.as_dict()
    (visit,) = rows(store, "visit_occurrence")
    assert visit["visit_start_datetime"] == datetime(2019, 2, 3, 9, 10)
    assert visit["visit_end_datetime"] == datetime(2019, 2, 3, 9, 50)
    measured = sorted(rows(store, "measurement"), key=lambda m: m["measurement_datetime"])
    assert [m["measurement_datetime"].minute for m in measured] == [15, 16, 17, 18, 19]
    assert {m["visit_occurrence_id"] for m in measured} == {visit["visit_occurrence_id"]}
    assert_accounted(store, report)


@pytest.mark.parametrize(
    "text", ["2019-02-03", "2019-02", "yesterday", "2019-02-03T09:15:00Z", "03/02/2019 09:15"]
)
def test_valid_or_unreadable_values_are_left_as_they_are(text):
    assert repair({"a": [text]}) == ({"a": [text]}, False)
