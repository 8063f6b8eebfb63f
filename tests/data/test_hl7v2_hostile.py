"""HL7 v2 files and messages as careless senders write them: every message read or accounted for."""

import gzip
import io
from pathlib import Path

import pytest

from flip.data.ingest import ingest_path
from flip.data.sources import textfile
from flip.data.sources.hl7v2 import parse_message, split_messages, stream_messages
from flip.data.sources.records import Rejected, SourceMerge, SourcePerson
from tests.data.accounting import assert_accounted
from tests.data.stored import rows

A01 = (
    "MSH|^~\\&|PAS|HOSP|FLIP|SITE|20200101083000||ADT^A01|C1|P|2.5\r"
    "PID|1||1001^^^HOSP^MR||Doe^Jane||19500304|F\r"
)
A04 = A01.replace("ADT^A01|C1", "ADT^A04|C2").replace("1001", "1002")


def _persons(data: bytes) -> list[str]:
    return [
        r.key
        for offset, message in split_messages(data)
        for r in parse_message(message, f"t@{offset}")
        if isinstance(r, SourcePerson)
    ]


def test_a_byte_order_mark_or_indented_msh_does_not_hide_the_first_message():
    assert _persons(b"\xef\xbb\xbf" + A01.encode() + A04.encode()) == [
        "patient/HOSP/1001",
        "patient/HOSP/1002",
    ]
    assert _persons(b"  " + A01.encode()) == ["patient/HOSP/1001"]


def test_a_message_with_other_field_separators_is_read():
    assert _persons(A01.replace("|", "#").encode()) == ["patient/HOSP/1001"]


def test_an_unclosed_frame_and_text_between_frames_are_read_not_dropped():
    framed = b"\x0b" + A01.encode() + b"\x1c\r" + A04.encode()
    assert _persons(framed) == ["patient/HOSP/1001", "patient/HOSP/1002"]
    unclosed = b"\x0b" + A01.encode() + b"\x1c\r\x0b" + A04.encode()
    assert _persons(unclosed) == ["patient/HOSP/1001", "patient/HOSP/1002"]


def test_text_before_the_first_message_is_quarantined_and_envelopes_are_dropped(store, tmp_path):
    path = tmp_path / "feed.hl7"
    envelope = "FHS|^~\\&|PAS\rBHS|^~\\&|PAS\r"
    path.write_bytes(b"exported by PAS v2\r\n" + (envelope + A01 + "BTS|1\rFTS|1\r").encode())
    messages = list(split_messages(path.read_bytes()))
    assert [m[:3] for _, m in messages] == [b"exp", b"MSH"]
    report = ingest_path(store, "hl7v2", path)
    assert report.rules == {"hl7.msh_missing": 1} and report.loaded == 1
    assert_accounted(store, report)


def test_a_message_without_a_type_is_quarantined_not_skipped():
    (record,) = parse_message(b"MSH|^~\\&|PAS|HOSP", "t@0")
    assert isinstance(record, Rejected) and record.rule == "hl7.msh_9.missing"


def test_patients_and_orders_without_order_numbers_keep_their_own_results(store, tmp_path):
    path = tmp_path / "oru.hl7"
    path.write_bytes(
        b"MSH|^~\\&|LAB|H|FLIP|S|20240101||ORU^R01|G1|P|2.5\r"
        b"PID|1||7^^^H^MR||X^Y||19700101|F\rPV1|1|O\rOBR|1|||x^Lipid^LN|||20240101\r"
        b"OBX|1|NM|14647-2^Chol^LN||5.2|mmol/L|||||F\r"
        b"OBR|2|||x^Lipid^LN|||20240201\rOBX|1|NM|14647-2^Chol^LN||5.0|mmol/L|||||F\r"
        b"PID|2||8^^^H^MR||X^Z||19710101|M\rPV1|1|I\rOBR|1|||x^Lipid^LN|||20240101\r"
        b"OBX|1|NM|14647-2^Chol^LN||4.9|mmol/L|||||F\r"
    )
    report = ingest_path(store, "hl7v2", path)
    assert report.skipped == 0 and report.quarantined == 0, report.as_dict()
    persons = {p["person_id"]: p["person_source_value"] for p in rows(store, "person")}
    values = sorted(
        (persons[m["person_id"]], m["value_as_number"]) for m in rows(store, "measurement")
    )
    assert values == [("7", 5.0), ("7", 5.2), ("8", 4.9)]
    visits = {
        persons[v["person_id"]]: v["visit_source_value"] for v in rows(store, "visit_occurrence")
    }
    assert visits == {"7": "AMB", "8": "IMP"}
    assert_accounted(store, report)


def test_an_a40_merges_every_patient_pair_it_carries():
    message = (
        b"MSH|^~\\&|PAS|H|FLIP|S|20240101||ADT^A40|M1|P|2.5\rEVN|A40\r"
        b"PID|1||1^^^H^MR\rMRG|2^^^H^MR\rPID|2||3^^^H^MR\rMRG|4^^^H^MR\rPID|3||5^^^H^MR\r"
    )
    merges, rejected = parse_message(message, "t@0")[:2], parse_message(message, "t@0")[2:]
    assert [(m.person_key, m.old_person_key) for m in merges if isinstance(m, SourceMerge)] == [
        ("patient/H/1", "patient/H/2"),
        ("patient/H/3", "patient/H/4"),
    ]
    assert [r.rule for r in rejected if isinstance(r, Rejected)] == ["hl7.mrg.missing"]


def test_the_first_identifier_present_in_pid_3_names_the_patient():
    for pid3 in ("~1001^^^HOSP^MR", '""~1001^^^HOSP^MR', "^^^X^MR~1001^^^HOSP^MR"):
        assert _persons(A01.replace("1001^^^HOSP^MR", pid3).encode()) == ["patient/HOSP/1001"]


def test_escaped_delimiters_in_an_identifier_are_unescaped():
    assert _persons(A01.replace("1001", "10\\T\\01").encode()) == ["patient/HOSP/10&01"]


def test_a_nul_byte_in_a_text_result_does_not_sink_the_run(store, tmp_path):
    path = tmp_path / "nul.hl7"
    path.write_bytes(
        b"MSH|^~\\&|LAB|H|FLIP|S|20240101||ORU^R01|N1|P|2.5\r"
        b"PID|1||2002^^^HOSP^MR||X^Y||19700101|F\rOBR|1||A9\r"
        b"OBX|1|TX|x^y^L||padded\x00text||||||F\r"
    )
    report = ingest_path(store, "hl7v2", path)
    (note,) = rows(store, "note")
    assert note["note_text"] == "paddedtext"
    assert report.warnings["text.nul_removed"] == 1
    assert_accounted(store, report)


def test_a_patient_id_too_long_for_a_record_key_is_quarantined_not_fatal(store, tmp_path):
    path = tmp_path / "long.hl7"
    path.write_text(A01.replace("1001", "7" * 250) + A04, newline="")
    report = ingest_path(store, "hl7v2", path)
    assert report.rules == {"source.key_too_long": 1}
    assert [p["person_source_value"] for p in rows(store, "person")] == ["1002"]
    assert_accounted(store, report)


def test_re_reading_a_feed_after_its_a40_neither_revives_the_old_patient_nor_dangles(
    store, tmp_path
):
    feed, merge = tmp_path / "feed.hl7", tmp_path / "merge.hl7"
    feed.write_bytes(
        (
            A01 + "MSH|^~\\&|LAB|H|FLIP|S|20240101||ORU^R01|N1|P|2.5\r"
            "PID|1||2002^^^HOSP^MR||X^Y||19700101|F\rOBR|1||A9\r"
            "OBX|1|NM|2093-3^Chol^LN||5.2|mmol/L|||||F\r"
        ).encode()
    )
    merge.write_bytes(
        b"MSH|^~\\&|PAS|HOSP|FLIP|S|20240102||ADT^A40|M1|P|2.5\r"
        b"PID|1||1001^^^HOSP^MR\rMRG|2002^^^HOSP^MR\r"
    )
    reports = []
    for path in (feed, merge, feed, merge):
        reports.append(ingest_path(store, "hl7v2", path, source_system="pas"))
        assert_accounted(store, reports[-1])
    first, again = reports[:2], reports[2:]
    assert [r.loaded for r in first] == [3, 1]
    # the old patient's record is skipped: its identifier was retired by the merge
    assert [(r.loaded, r.unchanged, r.quarantined) for r in again] == [(0, 2, 0), (0, 1, 0)]
    assert again[0].skipped_rules == {"person.merged_away": 1}
    (person,) = rows(store, "person")
    (result,) = rows(store, "measurement")
    assert result["person_id"] == person["person_id"] and person["person_source_value"] == "1001"


def test_an_overlong_or_nul_message_type_is_skipped_not_the_run_lost(store, tmp_path):
    """The skip rule carries MSH-9: over the rule column's length, or with a NUL, PostgreSQL
    refused the run's tallies and the whole run failed as it closed."""
    long = A01.replace("ADT^A01|C1", "Z" + "Q" * 120 + "^A01|C3")
    nul = A01.replace("ADT^A01|C1", "Z\x00X^A01|C4")
    path = tmp_path / "feed.hl7"
    path.write_bytes((long + "\n" + nul + "\n" + A04).encode())
    report = ingest_path(store, "hl7v2", path)
    assert_accounted(store, report)
    assert (report.loaded, report.skipped) == (1, 2)
    assert sorted(report.skipped_rules) == [
        "hl7.message_type.unhandled.ZQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ",
        "hl7.message_type.unhandled.ZX^A01",
    ]


FIXTURES = Path(__file__).parent / "fixtures" / "hl7v2"


@pytest.mark.parametrize("piece", [1, 7, 64, 1 << 20])
def test_a_file_read_piece_by_piece_splits_as_when_read_whole(piece):
    framed = b"\x0b" + A01.encode() + b"\x1c\r" + b"\x0b" + A04.encode() + b"\x1c\r"
    samples = [path.read_bytes() for path in sorted(FIXTURES.glob("*.hl7"))]
    mixed = b"\xef\xbb\xbfjunk\r" + A01.encode() + framed + A04.replace("\r", "\n").encode()
    for data in (*samples, framed, mixed):
        expected = list(split_messages(data))
        assert list(stream_messages(io.BytesIO(data), piece)) == expected


def test_a_gzipped_feed_is_read(store, tmp_path):
    path = tmp_path / "feed.hl7.gz"
    path.write_bytes(gzip.compress((A01 + A04).encode()))
    report = ingest_path(store, "hl7v2", path)
    assert_accounted(store, report)
    assert report.loaded == 2


def test_a_message_longer_than_the_limit_is_quarantined_never_held(store, tmp_path, monkeypatch):
    monkeypatch.setattr(textfile, "MAX_LINE", 4096)
    huge = A01.replace("Doe^Jane", "Doe^" + "J" * 20000)
    path = tmp_path / "feed.hl7"
    path.write_bytes((A01 + huge + A04.replace("1002", "1003")).encode())
    assert [m is None for _, m in stream_messages(path.open("rb"), 1000)] == [False, True, False]
    report = ingest_path(store, "hl7v2", path)
    assert_accounted(store, report)
    assert report.loaded == 2 and report.rules == {"hl7.message_too_long": 1}


def test_results_pending_in_the_lab_are_skipped_not_stored_valueless(store, tmp_path):
    message = (
        "MSH|^~\\&|LAB|HOSP|EHR|HOSP|20230102100000||ORU^R01|P1|P|2.4\r"
        "PID|1||600^^^HOSP^MR||A^B||19700101|F\r"
        "OBR|1|O1|F1|24323-8^CMP^LN|||20230102090000||||||||||||||||||P\r"
        "OBX|1|NM|2345-7^Glucose^LN|||mmol/L|||||I\r"
        "OBX|2|NM|2160-0^Creatinine^LN||80|umol/L|||||F\r"
    )
    path = tmp_path / "p.hl7"
    path.write_bytes(message.encode())
    report = ingest_path(store, "hl7v2", path)
    assert report.skipped_rules == {"hl7.obx.status.I": 1}, report.as_dict()
    assert [r["measurement_source_value"] for r in rows(store, "measurement")] == ["2160-0"]
    assert_accounted(store, report)
