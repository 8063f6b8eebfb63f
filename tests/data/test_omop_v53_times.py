"""A CDM v5.3 export keeps a measurement's time of day in `measurement_time`, beside its date."""

from datetime import datetime

from flip.data.ingest import ingest_path
from tests.data.accounting import assert_accounted
from tests.data.stored import rows

PERSON = "person_id,gender_concept_id,year_of_birth,race_concept_id,ethnicity_concept_id\n"
HEADER = (
    "measurement_id,person_id,measurement_concept_id,measurement_date,measurement_time,"
    "measurement_datetime,measurement_type_concept_id,value_as_number,measurement_source_value\n"
)


def test_v53_measurement_time_joins_the_date_into_measurement_datetime(store, tmp_path):
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "person.csv").write_text(PERSON + "1,8507,1950,0,0\n")
    (folder / "measurement.csv").write_text(
        HEADER
        + "10,1,3004501,2020-01-01,10:30:00,NULL,44818702,5.5,a\n"
        + "11,1,3004501,2020-01-02,7:05,,44818702,5.6,b\n"
        + "12,1,3004501,2020-01-03,09:00,2020-01-03 11:45:00,44818702,5.7,c\n"
        + "13,1,3004501,2020-01-04,25:99,,44818702,5.8,d\n"
        + "14,1,3004501,2020-01-05,,,44818702,5.9,e\n"
    )
    report = ingest_path(store, "omop", folder)
    assert report.quarantined == 0, report.as_dict()
    assert report.warnings == {"omop.time_unreadable": 1}, report.as_dict()
    when = {
        r["measurement_source_value"]: r["measurement_datetime"] for r in rows(store, "measurement")
    }
    assert when == {
        "a": datetime(2020, 1, 1, 10, 30),
        "b": datetime(2020, 1, 2, 7, 5),
        "c": datetime(2020, 1, 3, 11, 45),  # an export's own datetime stands
        "d": None,
        "e": None,
    }
    assert_accounted(store, report)
