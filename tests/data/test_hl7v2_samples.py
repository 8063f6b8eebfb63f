"""HL7 v2 messages FLIP did not write (tests/data/fixtures/hl7v2/README.md says where from)."""

from datetime import date, datetime
from pathlib import Path

import pytest

from flip.data.cdm.rows import OPERATORS
from flip.data.ingest import ingest_path
from flip.data.sources.hl7v2 import read_file
from flip.data.sources.hl7v2_values import numeric, structured, timestamp
from flip.data.sources.records import Rejected, Skipped, SourceEvent
from tests.data.accounting import assert_accounted
from tests.data.stored import rows

SAMPLES = Path(__file__).parent / "fixtures" / "hl7v2"


def test_the_cerner_adt_a01_with_explicit_nulls_loads_whole(store):
    report = ingest_path(store, "hl7v2", SAMPLES / "python-hl7_adt_a01_cerner.hl7")
    assert report.quarantined == 0 and report.rules == {}, report.rules
    (person,) = rows(store, "person")
    assert person["person_source_value"] == "2148790" and person["year_of_birth"] == 1952
    (visit,) = rows(store, "visit_occurrence")
    assert visit["visit_start_datetime"] == datetime(2014, 2, 10, 22, 53)
    (diagnosis,) = rows(store, "condition_occurrence")
    assert diagnosis["condition_source_value"] == "440.21"
    assert report.unmapped == {"http://hl7.org/fhir/sid/icd-9-cm|440.21": 1}
    assert_accounted(store, report)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", None),
        ('""', None),
        ("2024", date(2024, 1, 1)),
        ("20240305", date(2024, 3, 5)),
        ("202403050845", datetime(2024, 3, 5, 8, 45)),
        ("20240305084512", datetime(2024, 3, 5, 8, 45, 12)),
        ("20240305084512.123+0100", datetime(2024, 3, 5, 8, 45, 12)),
        ("202403050845-0500", datetime(2024, 3, 5, 8, 45)),
    ],
)
def test_timestamps_keep_their_time_of_day_with_or_without_seconds_and_zone(value, expected):
    assert timestamp(value) == expected


@pytest.mark.parametrize("value", ["2024-03-05", "20241305", "yesterday", "2024030"])
def test_a_malformed_timestamp_is_an_error(value):
    with pytest.raises(ValueError):
        timestamp(value)


@pytest.mark.parametrize(
    ("value", "number", "operator"),
    [("182", 182.0, None), ("<0.5", 0.5, "<"), (">= 60", 60.0, ">="), ("-1.5", -1.5, None)],
)
def test_nm_values_keep_a_leading_comparator(value, number, operator):
    assert (numeric(value).value, numeric(value).operator) == (number, operator)


@pytest.mark.parametrize(
    ("components", "number", "operator", "text"),
    [
        (("<", "0.5", "", ""), 0.5, "<", None),
        (("", "182", "", ""), 182.0, None, None),
        ((">", "60", "", ""), 60.0, ">", None),
        (("<=", "5", "", ""), 5.0, "<=", None),
        (("", "1", "-", "3"), None, None, "1-3"),
        (("", "1", ":", "128"), None, None, "1:128"),
        (("", "2", "+", ""), None, None, "2+"),
    ],
)
def test_sn_values_as_labs_send_them(components, number, operator, text):
    parsed = structured(*components)
    assert (parsed.value, parsed.operator, parsed.text) == (number, operator, text)


@pytest.mark.parametrize(
    "components", [("<>", "1", "", ""), ("", "high", "", ""), ("~", "1", "", "")]
)
def test_a_malformed_sn_is_an_error(components):
    with pytest.raises(ValueError):
        structured(*components)


def test_the_spec_oru_keeps_its_person_for_a_malformed_birth_day(store):
    records = list(read_file(SAMPLES / "python-hl7_oru_r01_glucose.hl7"))
    person = records[0]
    assert person.warnings == ("hl7.PID-7.truncated",)
    assert (person.birth_date, person.birth_parts) == (date(1962, 3, 1), 2)  # 1962-03-52
    report = ingest_path(store, "hl7v2", SAMPLES / "python-hl7_oru_r01_glucose.hl7")
    assert report.warnings == {"hl7.PID-7.truncated": 1}
    (stored,) = rows(store, "person")
    assert (stored["year_of_birth"], stored["month_of_birth"], stored["day_of_birth"]) == (
        1962,
        3,
        None,
    )
    (glucose,) = rows(store, "measurement")
    assert glucose["value_as_number"] == 182.0
    assert glucose["measurement_datetime"] == datetime(2002, 2, 15, 7, 30)
    assert_accounted(store, report)


@pytest.mark.parametrize(
    ("pid7", "born"),
    [
        ("1970", (1970, None, None)),
        ("197005", (1970, 5, None)),
        ("1970+0100", (1970, None, None)),  # a zone offset is no month or day
        ("197005-0500", (1970, 5, None)),
    ],
)
def test_a_partial_birth_date_is_a_year_or_month_of_birth_not_an_invented_day(
    store, tmp_path, pid7, born
):
    path = tmp_path / "partial.hl7"
    path.write_text(
        "MSH|^~\\&|PAS|HOSP|FLIP|SITE|20200101083000||ADT^A01|C1|P|2.5\r"
        f"PID|1||1001^^^HOSP^MR||Doe^Jane||{pid7}|F\r",
        newline="",
    )
    report = ingest_path(store, "hl7v2", path)
    assert_accounted(store, report)
    assert report.warnings == {} and report.quarantined == 0
    (person,) = rows(store, "person")
    assert (person["year_of_birth"], person["month_of_birth"], person["day_of_birth"]) == born
    assert person["birth_datetime"] is None


def test_a_lab_feed_stores_every_good_result_and_sets_aside_each_bad_one_alone(store):
    report = ingest_path(store, "hl7v2", SAMPLES / "lab_feed.hl7")
    assert report.rules == {"hl7.obx.value_not_numeric": 1, "plausibility.value_range": 1}
    assert report.skipped_rules == {
        "hl7.obx.status.X": 1,
        "hl7.obx.value_type.ED": 1,
        "hl7.message_type.unhandled.ADT^A31": 1,
        "hl7.message_type.unhandled.SIU^S12": 1,
        "hl7.message_type.unhandled.ACK^R01": 1,
        "hl7.message_type.unhandled.ZPI^Z01": 1,
        "identity.superseded_in_run": 2,
        "hl7.segment.not_read.ORC": 1,
    }
    measurements = {m["measurement_source_value"]: m for m in rows(store, "measurement")}
    assert set(measurements) == {"2093-3", "2085-9", "2160-0", "1988-5", "5821-4"}
    assert measurements["2093-3"]["operator_concept_id"] in (None, 0)
    assert measurements["2085-9"]["operator_concept_id"] == OPERATORS[">"]
    assert measurements["2160-0"]["operator_concept_id"] == OPERATORS["<"]
    assert measurements["1988-5"]["operator_concept_id"] == OPERATORS["<"]
    assert measurements["1988-5"]["value_as_number"] == 0.5
    assert measurements["5821-4"]["value_as_number"] is None
    assert measurements["5821-4"]["value_source_value"] == "1-3"
    assert measurements["2085-9"]["measurement_datetime"] == datetime(2024, 3, 5, 8, 45, 12)
    assert measurements["2160-0"]["measurement_datetime"] == datetime(2024, 3, 5, 8, 45)
    notes = {n["note_source_value"]: n for n in rows(store, "note")}
    assert notes["8251-1"]["note_text"] == "Fasting sample.\nLipaemic: interpret with care."
    assert notes["DS"]["note_text"] == (
        "Admitted with chest pain.\nTroponin negative & ECG normal.\n"
        "Plan:\nGP follow-up in 2 weeks."
    )
    assert notes["DS"]["note_datetime"] == datetime(2024, 3, 6, 11, 30)
    assert notes["DS"]["note_title"] == "Discharge summary"
    (smoking,) = rows(store, "observation")
    assert smoking["value_as_concept_id"] == 4298794
    assert_accounted(store, report)


def test_message_types_flip_does_not_read_are_skipped_by_type_not_quarantined(store):
    for name in ("hl7apy_oml_o33.hl7", "hl7apy_rsp_k22.hl7", "hl7apy_zdt_z01.hl7"):
        (record,) = read_file(SAMPLES / name)
        assert isinstance(record, Skipped)
        assert record.rule.startswith("hl7.message_type.unhandled.")
    report = ingest_path(store, "hl7v2", SAMPLES, source_system="hl7v2:samples")
    assert report.skipped_rules["hl7.message_type.unhandled.OML^O33"] == 1
    assert report.skipped_rules["hl7.message_type.unhandled.RSP^K22"] == 1
    assert report.skipped_rules["hl7.message_type.unhandled.ZDT^Z01"] == 1
    assert "hl7.unsupported_type" not in report.rules
    assert_accounted(store, report)


def test_a_batch_file_reads_every_message_and_an_implausible_birth_is_quarantined(store):
    records = list(read_file(SAMPLES / "python-hl7_adt_a04_batch.hl7"))
    assert sum(type(r).__name__ == "SourcePerson" for r in records) == 3
    report = ingest_path(store, "hl7v2", SAMPLES / "python-hl7_adt_a04_batch.hl7")
    assert report.rules["plausibility.birth_date.too_old"] == 3
    assert rows(store, "person") == []
    assert_accounted(store, report)


def test_an_adt_without_a_birth_date_quarantines_the_person_with_the_reason(store):
    report = ingest_path(store, "hl7v2", SAMPLES / "hl7apy_adt_a01.hl7")
    assert report.rules == {"conformance.birth_date.missing": 1, "reference.dangling": 1}
    assert_accounted(store, report)


def test_bad_optional_fields_are_nulled_with_a_warning_and_keep_their_record():
    message = "\r".join(
        (
            "MSH|^~\\&|LAB|H|FLIP|S|20240101||ORU^R01|W1|P|2.5",
            "PID|1||9^^^H^MR||X^Y||19700101|F|||||||||||||||||||||2024-01-01",
            "OBR|1||A1|x^y^LN|||20240102",
            "OBX|1|NM|2093-3^Chol^LN||5.2|mmol/L|||||F|||tomorrow",
            "OBX|2||2093-3^Chol^LN",
        )
    )
    records = read_file_text(message)
    person, result, empty = records
    assert person.death_date is None and person.warnings == ("hl7.PID-29.invalid",)
    assert isinstance(result, SourceEvent) and result.start == date(2024, 1, 2)
    assert result.warnings == ("hl7.OBX-14.invalid",)
    assert isinstance(empty, Skipped) and empty.rule == "hl7.obx.value_missing"


def test_a_pid_without_identifier_quarantines_only_its_patient_group():
    message = "\r".join(
        (
            "MSH|^~\\&|LAB|H|FLIP|S|20240101||ORU^R01|G1|P|2.5",
            'PID|1||""||X^Y||19700101|F',
            "OBR|1||A1|x^y^LN|||20240102",
            "OBX|1|NM|2093-3^Chol^LN||5.2|mmol/L|||||F",
            "PID|2||8^^^H^MR||X^Z||19710101|M",
            "OBR|1||A2|x^y^LN|||20240102",
            "OBX|1|NM|2093-3^Chol^LN||4.9|mmol/L|||||F",
        )
    )
    records = read_file_text(message)
    assert isinstance(records[0], Rejected) and records[0].rule == "hl7.pid.identifier_missing"
    assert [type(r).__name__ for r in records[1:]] == ["SourcePerson", "SourceEvent"]
    assert records[2].person_key == "patient/H/8" and records[2].value == 4.9


def test_z_segments_in_a_message_flip_reads_are_skipped_by_their_name(store, tmp_path):
    """A site's own Z-segments (here an NHS number in ZPI, a ward note in ZVN) are not read:
    each is counted as skipped under its segment name, and the message's records load."""
    feed = tmp_path / "adt.hl7"
    feed.write_text(
        "\r".join(
            (
                "MSH|^~\\&|PAS|H|FLIP|S|20240101||ADT^A01|Z1|P|2.5",
                "ZEV|1|local event",
                "PID|1||9^^^H^MR||X^Y||19700101|F",
                "ZPI|1|NHS|9990001234",
                "PV1|1|I|WARD1|||||||||||||||||V9",
                "ZVN|1|quiet ward",
                "ZPI|2|NHS|9990001234",
                "MSH|^~\\&|PAS|H|FLIP|S|20240101||ADT^A04|Z2|P|2.5",
                "PID|1||8^^^H^MR||X^Y||19700101|F",
                "MSH|^~\\&|PAS|H|FLIP|S|20240102||ADT^A40|Z3|P|2.5",
                "PID|1||9^^^H^MR||X^Y||19700101|F",
                "MRG|8^^^H^MR",
                "ZMR|1|merged at the desk",
            )
        )
    )
    report = ingest_path(store, "hl7v2", feed)
    assert report.skipped_rules == {
        "hl7.segment.unhandled.ZEV": 1,
        "hl7.segment.unhandled.ZPI": 2,
        "hl7.segment.unhandled.ZVN": 1,
        "hl7.segment.unhandled.ZMR": 1,
    }
    assert report.quarantined == 0 and report.loaded == 4  # two persons, a visit, the merge
    assert_accounted(store, report)
    again = ingest_path(store, "hl7v2", feed)
    assert_accounted(store, again)
    z_again = {k: n for k, n in again.skipped_rules.items() if k.startswith("hl7.segment.")}
    assert again.loaded == 0 and z_again == report.skipped_rules


def read_file_text(message: str):
    from flip.data.sources.hl7v2 import parse_message

    return parse_message(message.encode(), "test@0")
