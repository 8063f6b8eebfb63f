"""HL7 v2 feeds as several hospitals send them: identities qualified by their authority,
sparse PIDs that change nothing they leave empty, results by what their values are."""

from pathlib import Path

from flip.data.ingest import ingest_path
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
