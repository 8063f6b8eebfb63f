"""PID-3 repetitions in whatever order a system sends them: the MR-typed one is the patient."""

from flip.data.ingest import ingest_path
from tests.data.accounting import assert_accounted
from tests.data.stored import rows


def _oru(control: str, pid3: str, order: str, value: str) -> str:
    return (
        "\r".join(
            [
                f"MSH|^~\\&|LAB|HOSP|EHR|HOSP|20230102100000||ORU^R01|{control}|P|2.5",
                f"PID|1||{pid3}||Doe^J||19700101|M",
                f"OBR|1||{order}|2345-7^Glu^LN|||20230102080000",
                f"OBX|1|NM|2345-7^Glucose^LN||{value}|mmol/L|||||F",
            ]
        )
        + "\r"
    )


def test_one_patient_whatever_the_order_of_pid3_repetitions(store, tmp_path):
    """One system sends the SSN first, another the MRN first: both are the patient of
    MRN 12345 (one person, its source value the MRN, never the SSN), and both results are
    filed under that person."""
    ssn, mrn = "999-99-9999^^^SSA^SS", "12345^^^HOSP^MR"
    folder = tmp_path / "feed"
    folder.mkdir()
    (folder / "1.hl7").write_text(_oru("C1", f"{ssn}~{mrn}", "F1", "5.5"))
    (folder / "2.hl7").write_text(_oru("C2", f"{mrn}~{ssn}", "F2", "6.5"))
    report = ingest_path(store, "hl7v2", folder)
    (person,) = rows(store, "person")
    assert person["person_source_value"] == "12345"
    results = rows(store, "measurement")
    assert len(results) == 2
    assert {r["person_id"] for r in results} == {person["person_id"]}
    assert_accounted(store, report)
