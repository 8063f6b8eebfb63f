"""HL7 v2 feeds as several hospitals send them: identities qualified by their authority,
sparse PIDs that change nothing they leave empty, results by what their values are."""

from datetime import date, datetime
from pathlib import Path

from flip.data.cdm.rows import block_columns, event_row
from flip.data.ingest import ingest_path
from flip.data.sources.records import BlockEvent, SourceEvent
from flip.data.terminology.vocabulary import Vocabulary, hl7_system, system_vocabulary
from tests.data.accounting import assert_accounted
from tests.data.stored import rows


def _send(folder: Path, name: str, *segments: str) -> Path:
    """Write one message (segments ended by CR) as `folder/name`; return the folder."""
    folder.mkdir(exist_ok=True)
    (folder / name).write_bytes(("\r".join(segments) + "\r").encode())
    return folder


def _twice(store, path: Path):
    """Ingest `path`, check its accounting, ingest it again: nothing changes."""
    first = ingest_path(store, "hl7v2", path)
    assert_accounted(store, first)
    again = ingest_path(store, "hl7v2", path)
    assert_accounted(store, again)
    assert again.loaded == 0 and again.quarantined == first.quarantined, again.as_dict()
    return first


def test_results_of_two_labs_with_the_same_filler_number_are_two_results(store, tmp_path):
    folder = _send(
        tmp_path / "m",
        "1.hl7",
        "MSH|^~\\&|CHEM|HOSP_A|EHR|HOSP|20230102100000||ORU^R01|E1|P|2.5",
        "PID|1||111^^^HOSP_A^MR||A^A||19700101|F",
        "OBR|1||1001^CHEM|2345-7^G^LN|||20230102090000",
        "OBX|1|NM|2345-7^Glucose^LN||5.5|mmol/L|||||F",
    )
    _send(
        folder,
        "2.hl7",
        "MSH|^~\\&|POCT|HOSP_B|EHR|HOSP|20230103100000||ORU^R01|E2|P|2.5",
        "PID|1||222^^^HOSP_B^MR||B^B||19800101|M",
        "OBR|1||1001^POCT|2345-7^G^LN|||20230103090000",
        "OBX|1|NM|2345-7^Glucose^LN||9.9|mmol/L|||||F",
    )
    _send(  # no namespace at all: the sending facility and the patient tell it apart
        folder,
        "3.hl7",
        "MSH|^~\\&|LAB|HOSP_C|EHR|HOSP|20230103100000||ORU^R01|E3|P|2.5",
        "PID|1||333^^^HOSP_C^MR||C^C||19800101|M",
        "OBR|1||1001|2345-7^G^LN|||20230103090000",
        "OBX|1|NM|2345-7^Glucose^LN||7.7|mmol/L|||||F",
    )
    report = _twice(store, folder)
    assert report.skipped == 0, report.as_dict()
    values = sorted(r["value_source_value"] for r in rows(store, "measurement"))
    assert values == ["5.5", "7.7", "9.9"]


def test_visit_numbers_of_two_authorities_are_two_visits(store, tmp_path):
    folder = _send(
        tmp_path / "m",
        "1.hl7",
        "MSH|^~\\&|PAS|HOSP_A|EHR|HOSP|20230101080000||ADT^A01|A1|P|2.5",
        "PID|1||111^^^HOSP_A^MR||A^A||19700101|F",
        "PV1|1|I|W1||||||||||||||||V100^^^HOSP_A^VN",
        "DG1|1||I21.9^AMI^I10||20230101|A",
    )
    _send(
        folder,
        "2.hl7",
        "MSH|^~\\&|PAS|HOSP_B|EHR|HOSP|20230102080000||ADT^A01|B1|P|2.5",
        "PID|1||222^^^HOSP_B^MR||B^B||19800101|M",
        "PV1|1|O|C1||||||||||||||||V100^^^HOSP_B^VN",
        "DG1|1||J45.9^Asthma^I10||20230102|A",
    )
    report = _twice(store, folder)
    assert report.skipped == 0, report.as_dict()
    assert len(rows(store, "visit_occurrence")) == 2
    assert len(rows(store, "condition_occurrence")) == 2


ADMIT = (
    "MSH|^~\\&|PAS|HOSP|EHR|HOSP|20230101080000||ADT^A04|G1|P|2.4",
    "PID|1||700^^^HOSP^MR||A^B||19700101|F|||||||||||||||||||||20221231",
)


def test_a_result_whose_pid_has_no_birth_date_files_under_the_known_patient(store, tmp_path):
    ingest_path(store, "hl7v2", _send(tmp_path / "a", "a.hl7", *ADMIT))
    folder = _send(
        tmp_path / "b",
        "b.hl7",
        "MSH|^~\\&|LAB|HOSP|EHR|HOSP|20230102100000||ORU^R01|D4|P|2.4",
        "PID|1||700^^^HOSP^MR||A^B|||F",
        "OBR|1|O4|F4|2345-7^G^LN|||20230102090000",
        "OBX|1|NM|2345-7^Glucose^LN||6.1|mmol/L|||||F",
    )
    report = _twice(store, folder)
    assert report.quarantined == 0, report.rules
    (person,) = rows(store, "person")
    assert person["year_of_birth"] == 1970 and person["day_of_birth"] == 1
    assert len(rows(store, "measurement")) == 1


def test_a_new_patient_without_birth_date_is_quarantined_and_so_are_their_results(store, tmp_path):
    folder = _send(
        tmp_path / "b",
        "b.hl7",
        "MSH|^~\\&|LAB|HOSP|EHR|HOSP|20230102100000||ORU^R01|D5|P|2.4",
        "PID|1||701^^^HOSP^MR||A^B|||F",
        "OBR|1|O4|F4|2345-7^G^LN|||20230102090000",
        "OBX|1|NM|2345-7^Glucose^LN||6.1|mmol/L|||||F",
    )
    report = _twice(store, folder)
    assert report.rules == {"conformance.birth_date.missing": 1, "reference.dangling": 1}


def test_a_sparser_pid_changes_nothing_it_leaves_empty_and_deletes_what_it_nulls(store, tmp_path):
    ingest_path(store, "hl7v2", _send(tmp_path / "a", "a.hl7", *ADMIT))
    sparse = _send(
        tmp_path / "b",
        "b.hl7",
        "MSH|^~\\&|LAB|HOSP|EHR|HOSP|20230102100000||ORU^R01|G2|P|2.4",
        "PID|1||700^^^HOSP^MR||A^B||19700101",
        "OBR|1|O7|F7|2345-7^G^LN|||20230102090000",
        "OBX|1|NM|2345-7^Glucose^LN||5.5|mmol/L|||||F",
    )
    _twice(store, sparse)
    (person,) = rows(store, "person")
    assert person["gender_concept_id"] == 8532
    assert len(rows(store, "death")) == 1
    nulled = _send(
        tmp_path / "c",
        "c.hl7",
        "MSH|^~\\&|PAS|HOSP|EHR|HOSP|20230103080000||ADT^A08|G3|P|2.4",
        'PID|1||700^^^HOSP^MR||A^B||19700101|""|||||||||||||||||||||""',
    )
    _twice(store, nulled)
    (person,) = rows(store, "person")
    assert person["gender_concept_id"] == 0 and rows(store, "death") == []


def test_a_sparser_pid_in_the_same_run_keeps_what_the_first_said(store, tmp_path):
    folder = _send(tmp_path / "m", "1.hl7", *ADMIT)
    _send(
        folder,
        "2.hl7",
        "MSH|^~\\&|LAB|HOSP|EHR|HOSP|20230102100000||ORU^R01|G2|P|2.4",
        "PID|1||700^^^HOSP^MR||A^B",
        "OBR|1|O7|F7|2345-7^G^LN|||20230102090000",
        "OBX|1|NM|2345-7^Glucose^LN||5.5|mmol/L|||||F",
    )
    report = _twice(store, folder)
    assert report.quarantined == 0, report.rules
    (person,) = rows(store, "person")
    assert person["gender_concept_id"] == 8532 and person["year_of_birth"] == 1970
    assert len(rows(store, "death")) == 1 and len(rows(store, "measurement")) == 1


def _labs(tmp_path: Path, *results: str) -> Path:
    return _send(
        tmp_path / "m",
        "labs.hl7",
        "MSH|^~\\&|LAB|HOSP|EHR|HOSP|20230102100000||ORU^R01|C3|P|2.4",
        "PID|1||900^^^HOSP^MR||X^Y||19700101|F",
        "OBR|1|O1|F1|24323-8^CMP^LN|||20230102090000",
        *results,
    )


def test_numbers_sent_as_st_or_untyped_are_measurements_and_text_stays_text(store, tmp_path):
    folder = _labs(
        tmp_path,
        "OBX|1|ST|2951-2^Sodium^LN||140|mmol/L|135-145|N|||F",
        "OBX|2|ST|2823-3^Potassium^LN||<2.0|mmol/L|3.5-5.1|LL|||F",
        "OBX|3|TX|2823-3^Potassium^LN||Result phoned to Dr X|||||F",
        "OBX|4||2345-7^Glucose^LN||5.5|mmol/L|||||F",
        "OBX|5|ST|8251-1^Comment^LN||see below|||||F",
        "OBX|6|ST|8251-1^Comment^LN||and call the lab|||||F",
    )
    report = _twice(store, folder)
    assert report.quarantined == 0 and report.skipped == 0, report.as_dict()
    measured = {
        r["measurement_source_value"]: (
            r["value_source_value"],
            r["unit_source_value"],
            r["operator_concept_id"],
        )
        for r in rows(store, "measurement")
    }
    assert measured["2951-2"] == ("140", "mmol/L", None)
    assert measured["2823-3"] == ("<2", "mmol/L", 4171756)
    assert measured["2345-7"][:2] == ("5.5", "mmol/L")
    notes = sorted(r["note_text"] for r in rows(store, "note"))
    assert notes == ["Result phoned to Dr X", "and call the lab", "see below"]


def test_pending_and_valueless_results_are_skipped_by_their_rules(store, tmp_path):
    folder = _labs(
        tmp_path,
        "OBX|1|NM|2345-7^Glucose^LN|||mmol/L|||||I",
        "OBX|2|NM|2160-0^Creatinine^LN|||umol/L|||||F",
        "OBX|3|NM|718-7^Hemoglobin^LN||13.2|g/dL|||||F",
        "OBX|4|NM|2093-3^Cholesterol^LN||4.1|mmol/L|||||O",
    )
    report = _twice(store, folder)
    assert report.skipped_rules == {
        "hl7.obx.status.I": 1,
        "hl7.obx.value_missing": 1,
        "hl7.obx.status.O": 1,
    }, report.as_dict()
    (measurement,) = rows(store, "measurement")
    assert measurement["measurement_source_value"] == "718-7"


def test_a_valueless_measurement_keeps_the_unit_concept_of_the_unit_sent(store):
    vocab = Vocabulary.from_store(store)
    event = SourceEvent(
        key="r",
        person_key="p",
        system="http://loinc.org",
        code="2160-0",
        start=date(2023, 1, 2),
        default_table="measurement",
        location="x",
        raw=b"",
        unit="umol/L",
    )
    row, _ = event_row("t", event, 1, vocab)
    assert row.values["unit_concept_id"] == vocab.unit("umol/L") != vocab.unit("mg/dL")
    (column,) = block_columns(
        "t",
        "measurement",
        [BlockEvent("r", "p", "2160-0", date(2023, 1, 2), None, "umol/L", None, "x", b"")],
        [vocab.map("http://loinc.org", "2160-0")],
        [1],
        vocab,
    )["unit_concept_id"]
    assert column == vocab.unit("umol/L")


def test_hl7_table_0396_names_and_their_spelled_variants_are_recognised():
    assert hl7_system("I9CP") == "urn:oid:2.16.840.1.113883.6.104"
    assert hl7_system("SNM3") == "http://snomed.info/sct"
    assert hl7_system("ICD-10-CM") == "http://hl7.org/fhir/sid/icd-10-cm"
    assert hl7_system("CPT-4") == "http://www.ama-assn.org/go/cpt"
    assert hl7_system("ICD-9-CM") == "http://hl7.org/fhir/sid/icd-9-cm"
    assert system_vocabulary("http://hl7.org/fhir/sid/icd-10-cm") == "ICD10CM"
    assert hl7_system("99-LOCAL") == "urn:hl7v2:99-LOCAL"


def _adt(event: str, control: str, when: str, pv1: str, msh9: str = "") -> tuple[str, ...]:
    return (
        f"MSH|^~\\&|PAS|HOSP|EHR|HOSP|{when}||{msh9 or 'ADT^' + event}|{control}|P|2.4",
        f"EVN|{event}|{when}",
        "PID|1||900^^^HOSP^MR||X^Y||19700101|F",
        pv1,
    )


def test_a_discharge_without_visit_number_ends_the_patients_one_open_visit(store, tmp_path):
    admit = "PV1|1|I|W1" + "|" * 41 + "20230101075500"
    folder = _send(tmp_path / "m", "1.hl7", *_adt("A01", "C1", "20230101080000", admit))
    _send(folder, "2.hl7", *_adt("A03", "C2", "20230105120000", admit + "|20230105113000"))
    report = _twice(store, folder)
    assert report.quarantined == 0, report.rules
    (visit,) = rows(store, "visit_occurrence")
    assert visit["visit_start_datetime"] == datetime(2023, 1, 1, 7, 55)
    assert visit["visit_end_datetime"] == datetime(2023, 1, 5, 11, 30)


def test_a_cancelled_admission_is_removed_and_an_old_adt_names_its_event_in_evn(store, tmp_path):
    pv1 = "PV1|1|I|4W||||||||||||||||5000123^^^HOSP^FIN"
    admit = (*_adt("A01", "K1", "20230101080000", pv1), "DG1|1||I21.9^AMI^I10||20230101|A")
    first = _send(tmp_path / "a", "1.hl7", *admit)
    _send(first, "2.hl7", *_adt("A01", "K0", "20230101070000", "PV1|1|I|W1", msh9="ADT"))
    report = _twice(store, first)
    assert "hl7.message_type.unhandled.ADT" not in report.skipped_rules, report.as_dict()
    assert len(rows(store, "visit_occurrence")) == 2
    cancel = _send(tmp_path / "b", "3.hl7", *_adt("A11", "K2", "20230101090000", pv1))
    report = _twice(store, cancel)
    assert report.withdrawn == 1, report.as_dict()
    assert len(rows(store, "visit_occurrence")) == 1
    (diagnosis,) = rows(store, "condition_occurrence")  # a cancelled visit's diagnosis stays
    assert diagnosis["visit_occurrence_id"] is None


def _oru(sent: str, control: str, value: str, status: str) -> str:
    """A glucose result message sent at `sent` (MSH-7)."""
    return (
        "\r".join(
            [
                f"MSH|^~\\&|LAB|HOSP|EHR|HOSP|{sent}||ORU^R01|{control}|P|2.5",
                "PID|1||111^^^HOSP^MR||A^A||19700101|F",
                "OBR|1|O1^EHR|F1^LAB|2345-7^G^LN|||20230101090000",
                f"OBX|1|NM|2345-7^Glucose^LN||{value}|mmol/L|||||{status}",
            ]
        )
        + "\r"
    )


def test_an_older_result_message_sent_again_does_not_undo_its_correction(store, tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    first = _oru("20230101090000", "R1", "5.5", "F")
    for name, text in (("0", first), ("1", _oru("20230101100000", "R2", "6.6", "C")), ("2", first)):
        (folder / f"{name}.hl7").write_text(text)
        report = ingest_path(store, "hl7v2", folder / f"{name}.hl7")
        assert_accounted(store, report)
    assert [r["value_source_value"] for r in rows(store, "measurement")] == ["6.6"]
    assert report.skipped_rules["identity.older_than_stored"] == 2, report.as_dict()  # PID, OBX
    both = tmp_path / "both.hl7"
    both.write_text(_oru("20230101100000", "R2", "6.6", "C") + first)
    ingest_path(store, "hl7v2", both)
    assert [r["value_source_value"] for r in rows(store, "measurement")] == ["6.6"]


def test_an_older_registration_sent_again_does_not_undo_a_newer_update(store, tmp_path):
    def adt(sent: str, event: str, born: str, sex: str) -> str:
        return (
            f"MSH|^~\\&|PAS|HOSP|EHR|HOSP|{sent}||ADT^{event}|{event}{sent}|P|2.5\r"
            f"PID|1||111^^^HOSP^MR||A^A||{born}|{sex}\r"
        )

    old = adt("20230101090000", "A04", "19700101", "F")
    for i, text in enumerate((old, adt("20230101100000", "A08", "19710202", "M"), old)):
        path = tmp_path / f"{i}.hl7"
        path.write_text(text)
        assert_accounted(store, ingest_path(store, "hl7v2", path))
    assert [r["year_of_birth"] for r in rows(store, "person")] == [1971]


def test_an_old_cancellation_sent_again_leaves_the_readmitted_visit(store, tmp_path):
    pv1 = "PV1|1|I|4W||||||||||||||||5000123^^^HOSP^FIN"
    admit, cancel = (
        _adt("A01", "K1", "20230101080000", pv1),
        _adt("A11", "K2", "20230101090000", pv1),
    )
    again = _adt("A01", "K3", "20230101100000", pv1)
    for i, message in enumerate((admit, cancel, again)):
        assert_accounted(
            store, ingest_path(store, "hl7v2", _send(tmp_path / f"{i}", "m.hl7", *message))
        )
    assert len(rows(store, "visit_occurrence")) == 1
    report = ingest_path(store, "hl7v2", _send(tmp_path / "3", "m.hl7", *cancel))
    assert_accounted(store, report)
    assert len(rows(store, "visit_occurrence")) == 1
    assert report.withdrawn == 0 and report.skipped_rules["identity.older_than_stored"] >= 1
    assert "hl7.visit.cancelled" not in report.skipped_rules, report.as_dict()
    both = _send(tmp_path / "4", "a.hl7", *again)
    _send(both, "b.hl7", *cancel)
    report = ingest_path(store, "hl7v2", both)
    assert len(rows(store, "visit_occurrence")) == 1
    assert "hl7.visit.cancelled" not in report.skipped_rules, report.as_dict()


def test_a_correction_sent_under_the_surviving_patient_replaces_the_merged_result(store, tmp_path):
    def oru(sent: str, mrn: str, value: str, status: str) -> tuple[str, ...]:
        return (
            f"MSH|^~\\&|LAB|HOSP|EHR|HOSP|{sent}||ORU^R01|R{sent}|P|2.5",
            f"PID|1||{mrn}^^^HOSP^MR||A^A||19700101|F",
            "OBR|1|O1^EHR|O1^LAB|2345-7^G^LN|||20230101070000",
            f"OBX|1|NM|2345-7^Glucose^LN||{value}|mmol/L|||||{status}",
        )

    merge = (
        "MSH|^~\\&|PAS|HOSP|EHR|HOSP|20230101080000||ADT^A40|M1|P|2.5",
        "EVN|A40|20230101080000",
        "PID|1||111^^^HOSP^MR||A^A||19700101|F",
        "MRG|222^^^HOSP^MR",
    )
    admit = (
        "MSH|^~\\&|PAS|HOSP|EHR|HOSP|20230101060000||ADT^A04|A0|P|2.5",
        oru("", "111", "", "")[1],
    )
    sent = (admit, oru("20230101070000", "222", "5.5", "F"), merge)
    sent += (oru("20230101090000", "111", "6.6", "C"),)
    for i, message in enumerate(sent):
        report = ingest_path(store, "hl7v2", _send(tmp_path / f"{i}", "m.hl7", *message))
        assert_accounted(store, report)
    assert [r["value_source_value"] for r in rows(store, "measurement")] == ["6.6"]


def test_a_discharge_without_visit_number_ends_the_latest_open_visit_or_none(store, tmp_path):
    pv1 = "PV1|1|I|W1||||||||||||||||{}"
    first = _adt("A01", "C1", "20230101080000", pv1.format("V1^^^HOSP^VN"))
    second = _adt("A01", "C2", "20230101090000", pv1.format("V2^^^HOSP^VN"))
    lone = _adt("A03", "C3", "20230103080000", pv1.format("") + "|" * 26 + "20230103080000")
    report = ingest_path(store, "hl7v2", _send(tmp_path / "a", "0.hl7", *lone))
    assert_accounted(store, report)
    assert report.skipped_rules["hl7.visit.discharge_unmatched"] == 1, report.as_dict()
    assert report.warnings["hl7.visit.discharge_unmatched"] == 1
    assert rows(store, "visit_occurrence") == []
    folder = _send(_send(tmp_path / "b", "1.hl7", *first), "2.hl7", *second)
    ended = pv1.format("") + "|" * 26 + "20230102080000"
    _send(folder, "3.hl7", *_adt("A03", "C4", "20230102080000", ended))
    report = ingest_path(store, "hl7v2", folder)
    assert_accounted(store, report)
    assert report.skipped_rules["hl7.visit.discharge_unmatched"] == 0, report.as_dict()
    ends = {
        str(v["visit_start_datetime"]): str(v["visit_end_datetime"])
        for v in rows(store, "visit_occurrence")
    }
    # the folder's A03 ends the later of the two open stays; the one kept, the other
    assert ends == {
        "2023-01-01 09:00:00": "2023-01-02 08:00:00",
        "2023-01-01 08:00:00": "2023-01-03 08:00:00",
    }, ends


def test_text_with_components_or_a_date_sent_as_st_with_a_unit_stays_text(store, tmp_path):
    folder = _labs(
        tmp_path,
        "OBX|1|ST|26464-8^WBC^LN||10^9|/L|||||F",
        "OBX|2|ST|2345-7^Glucose^LN||20230101|mg/dL|||||F",
        "OBX|3||2093-3^Cholesterol^LN||5^2|mmol/L|||||F",
    )
    report = _twice(store, folder)
    assert report.quarantined == 0, report.as_dict()
    notes = sorted(r["note_text"] for r in rows(store, "note"))
    assert notes == ["10^9", "20230101"]
    (cholesterol,) = rows(store, "measurement")  # a measurement concept: no number
    assert (cholesterol["value_as_number"], cholesterol["value_source_value"]) == (None, "5^2")
