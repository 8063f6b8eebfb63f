"""FHIR exports as other systems write them: partial birth dates, every value[x], leap
seconds, NUL characters and overlong ids (PostgreSQL), byte order marks, bulk files named
by the server, identifier systems spelled differently, and results inside their report."""

import gzip
from datetime import datetime

import orjson
from sqlalchemy import select

from flip.data.cdm import schema
from flip.data.ingest import ingest_path
from tests.data.accounting import assert_accounted

LOINC, SNOMED = "http://loinc.org", "http://snomed.info/sct"
MRN = "http://hospital.example.org/mrn"


def cc(system, code):
    return {"coding": [{"system": system, "code": code}]}


def patient(id_, **extra):
    return {"resourceType": "Patient", "id": id_, "birthDate": "1970-05-06", **extra}


def obs(id_, subject="Patient/p1", code=cc(LOINC, "8867-4"), **value):
    return {
        "resourceType": "Observation",
        "id": id_,
        "status": "final",
        "subject": {"reference": subject},
        "code": code,
        "effectiveDateTime": "2020-01-02T08:30:00Z",
        **value,
    }


def ndjson(path, resources):
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in resources))
    return path


def select_all(store, table, *columns):
    t = schema.metadata.tables[table]
    with store.connect() as conn:
        return sorted(tuple(r) for r in conn.execute(select(*(t.c[c] for c in columns))))


def test_a_partial_birth_date_keeps_the_person_and_their_facts(store, tmp_path):
    """`1970` and `1970-05` are years (and months) of birth, as OMOP keeps them."""
    source = ndjson(
        tmp_path / "x.ndjson",
        [
            patient("year", birthDate="1970"),
            patient("month", birthDate="1970-05"),
            obs("o1", "Patient/year", valueQuantity={"value": 70, "code": "/min"}),
        ],
    )
    report = ingest_path(store, "fhir", source)
    assert_accounted(store, report)
    assert report.quarantined == 0, report.rules
    assert select_all(
        store, "person", "person_source_value", "year_of_birth", "month_of_birth", "day_of_birth"
    ) == [("Patient/month", 1970, 5, None), ("Patient/year", 1970, None, None)]
    assert report.rows["measurement"] == 1


def test_every_value_type_is_kept(store, tmp_path):
    """valueInteger is a number; boolean, time, dateTime, Period, Range and Ratio keep
    their text (they were stored as rows without any value)."""
    local = "http://example.org/local"
    resources = [
        patient("p1"),
        obs("int", code=cc(local, "i"), valueInteger=18),
        obs("bool", code=cc(local, "b"), valueBoolean=False),
        obs("time", code=cc(local, "t"), valueTime="10:30:00"),
        obs("when", code=cc(local, "d"), valueDateTime="2019-05-01"),
        obs("period", code=cc(local, "p"), valuePeriod={"start": "2019-01-01"}),
        obs("range", code=cc(local, "r"), valueRange={"low": {"value": 1}, "high": {"value": 3}}),
        obs(
            "ratio",
            code=cc(local, "q"),
            valueRatio={"numerator": {"value": 1}, "denominator": {"value": 128}},
        ),
        obs("apgar", code=cc(local, "a"), component=[{"code": cc(local, "c"), "valueInteger": 9}]),
    ]
    report = ingest_path(store, "fhir", ndjson(tmp_path / "x.ndjson", resources))
    assert_accounted(store, report)
    assert select_all(store, "measurement", "measurement_source_value", "value_as_number") == [
        ("c", 9.0),
        ("i", 18.0),
    ]
    assert select_all(store, "observation", "observation_source_value", "value_as_string") == [
        ("b", "false"),
        ("d", "2019-05-01"),
        ("p", "2019-01-01/"),
        ("q", "1/128"),
        ("r", "1 - 3"),
        ("t", "10:30:00"),
    ]


def test_a_leap_second_keeps_its_time_of_day(store, tmp_path):
    source = ndjson(
        tmp_path / "x.ndjson",
        [
            patient("p1"),
            obs(
                "o1",
                effectiveDateTime="2016-12-31T23:59:60Z",
                valueQuantity={"value": 70, "code": "/min"},
            ),
        ],
    )
    report = ingest_path(store, "fhir", source)
    assert_accounted(store, report)
    assert select_all(store, "measurement", "measurement_datetime") == [
        (datetime(2016, 12, 31, 23, 59, 59),)
    ]


def test_nul_characters_and_overlong_ids_never_stop_a_run(store, tmp_path):
    """PostgreSQL refuses NUL in text and keys over 200 characters: the run went down with a
    traceback. NULs are removed with a warning per row; an overlong id is quarantined; an overlong
    person identifier leaves the patient a person of its own, with a warning."""
    note = "aGVsbG8Ad29ybGQ="  # "hello\0world"
    resources = [
        patient("p1", identifier=[{"system": "urn:local", "value": "A\u0000B"}]),
        patient("p2", identifier=[{"system": MRN, "value": "V" * 300}]),
        obs("o1", valueString="posi\u0000tive"),
        obs("o" * 300, valueQuantity={"value": 70, "code": "/min"}),
        {"resourceType": "Organization", "id": "org", "name": "St\u0000 Elsewhere"},
        {
            "resourceType": "DocumentReference",
            "id": "d1",
            "status": "current",
            "subject": {"reference": "Patient/p1"},
            "date": "2020-01-02T00:00:00Z",
            "content": [{"attachment": {"contentType": "text/plain", "data": note}}],
        },
    ]
    source = ndjson(tmp_path / "x.ndjson", resources)
    report = ingest_path(store, "fhir", source, person_identifier=MRN)
    assert_accounted(store, report)
    assert report.rules == {"source.key_too_long": 1}
    assert report.warnings["text.nul_removed"] == 4  # person, observation, care_site, note
    assert report.warnings["fhir.person_identifier.too_long"] == 1
    assert select_all(store, "note", "note_text") == [("helloworld",)]
    assert ("AB",) in select_all(store, "person", "person_source_value")
    again = ingest_path(store, "fhir", source, person_identifier=MRN)
    assert_accounted(store, again)
    assert (again.loaded, again.unchanged) == (0, report.loaded)


def test_an_overlong_or_nul_element_name_is_a_warning_the_store_keeps(store, tmp_path):
    """A bad element's warning carries its name: over the rule column's length, or with a
    NUL, PostgreSQL refused the run's tallies and the whole run failed as it closed."""
    resources = [
        patient("p1", **{"x" * 100: 1}),
        obs("o1", valueString="a", **{"bad\u0000name": 1}),
    ]
    report = ingest_path(store, "fhir", ndjson(tmp_path / "x.ndjson", resources))
    assert_accounted(store, report)
    assert report.loaded == 2
    assert sorted(report.warnings) == [
        "fhir.Observation.badname.invalid",
        "fhir.Patient." + "x" * (60 - len("fhir.Patient.")),
    ]


def test_bulk_files_are_read_patients_first_whatever_their_names(store, tmp_path):
    """Bulk clients name files `1.Patient.ndjson` or by an opaque id: an Observation file
    sorting first left its facts dangling once patients are identified by MRN."""
    folder = tmp_path / "export"
    folder.mkdir()
    ndjson(folder / "0a1b.ndjson", [obs("o1", valueQuantity={"value": 70, "code": "/min"})])
    with gzip.open(folder / "1.patient.ndjson.gz", "wb") as handle:
        handle.write(orjson.dumps(patient("p1", identifier=[{"system": MRN, "value": "7"}])))
    report = ingest_path(store, "fhir", folder, person_identifier=MRN)
    assert_accounted(store, report)
    assert (report.loaded, report.quarantined) == (2, 0), report.rules


def test_an_identifier_system_is_the_same_whatever_its_case_or_trailing_slash(store, tmp_path):
    resources = [
        patient("p1", identifier=[{"system": MRN + "/", "value": "7"}]),
        patient("p2", identifier=[{"system": MRN.upper(), "value": "7"}]),
        obs("o1", "Patient/p2", valueQuantity={"value": 70, "code": "/min"}),
        obs("o2", f"Patient?identifier={MRN}/|7", valueQuantity={"value": 71, "code": "/min"}),
    ]
    report = ingest_path(
        store, "fhir", ndjson(tmp_path / "x.ndjson", resources), person_identifier=MRN
    )
    assert_accounted(store, report)
    assert select_all(store, "person", "person_source_value") == [("7",)]
    assert report.skipped_rules == {"person.identifier.known": 1}
    assert report.rows["measurement"] == 2


def test_a_byte_order_mark_does_not_cost_the_file(store, tmp_path):
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": patient("p1")}, {"resource": obs("o1", valueInteger=70)}],
    }
    (tmp_path / "bundle.json").write_bytes(b"\xef\xbb\xbf" + orjson.dumps(bundle))
    (tmp_path / "more.ndjson").write_bytes(b"\xef\xbb\xbf" + orjson.dumps(patient("p2")) + b"\n")
    report = ingest_path(store, "fhir", tmp_path)
    assert_accounted(store, report)
    assert (report.loaded, report.quarantined) == (3, 0), report.rules


def test_results_inside_their_report_and_bundles_inside_bundles_are_read(store, tmp_path):
    """A panel's results sent as contained Observations were lost with the skipped panel;
    a Bundle nested in a Bundle was quarantined whole."""
    contained = {k: v for k, v in obs("r1", valueQuantity={"value": 70, "code": "/min"}).items()}
    del contained["subject"], contained["effectiveDateTime"]
    report_resource = {
        "resourceType": "DiagnosticReport",
        "id": "dr",
        "status": "final",
        "subject": {"reference": "Patient/p1"},
        "code": cc(LOINC, "24323-8"),
        "effectiveDateTime": "2020-01-02T08:00:00Z",
        "contained": [contained],
        "result": [{"reference": "#r1"}],
    }
    inner = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": obs("o2", valueQuantity={"value": 71, "code": "/min"})}],
    }
    outer = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": patient("p1")}, {"resource": report_resource}, {"resource": inner}],
    }
    (tmp_path / "b.json").write_bytes(orjson.dumps(outer))
    report = ingest_path(store, "fhir", tmp_path / "b.json")
    assert_accounted(store, report)
    assert report.skipped_rules == {"fhir.report.panel": 1}
    assert select_all(store, "measurement", "value_as_number", "measurement_datetime") == [
        (70.0, datetime(2020, 1, 2, 8, 0)),
        (71.0, datetime(2020, 1, 2, 8, 30)),
    ]
