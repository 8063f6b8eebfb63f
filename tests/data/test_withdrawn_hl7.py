"""HL7 v2 results withdrawn by a later message (OBX-11 D or W): text results stored as
notes too, and a withdrawal that finds nothing is counted, not silent."""

from flip.data.ingest import ingest_path
from tests.data.accounting import assert_accounted
from tests.data.stored import rows

REPORT = "\r".join(
    (
        "MSH|^~\\&|RAD|HOSP|FLIP|SITE|20240101120000||ORU^R01|T1|P|2.5",
        "PID|||MRN1^^^HOSP^MR||DOE^JANE||19700101|F",
        "OBR|1|P1|F1|71020^Chest X-ray^C4|||20240101100000",
        "OBX|1|TX|18782-3^Radiology study observation^LN|1|No acute findings.||||||F",
        "OBX|2|TX|18782-3^Radiology study observation^LN|1|Heart size normal.||||||F",
        "OBX|3|NM|2345-7^Glucose^LN|1|5.5|mmol/L|||||F",
    )
)


def _send(tmp_path, name: str, message: str):
    path = tmp_path / name
    path.write_bytes((message + "\r").encode())
    return path


def test_a_text_result_deleted_by_a_later_message_loses_its_note(store, tmp_path):
    first = ingest_path(store, "hl7v2", _send(tmp_path, "a.hl7", REPORT))
    assert_accounted(store, first)
    assert len(rows(store, "note")) == 1 and len(rows(store, "measurement")) == 1
    deleted = REPORT.replace("||||||F", "||||||D").replace("|T1|", "|T2|")
    second = ingest_path(store, "hl7v2", _send(tmp_path, "b.hl7", deleted))
    assert_accounted(store, second)
    assert rows(store, "note") == [] and len(rows(store, "measurement")) == 1
    assert second.withdrawn == 1 and second.withdrawn_rows == {"note": 1}


def test_a_deletion_that_matches_no_stored_result_is_counted(store, tmp_path):
    ingest_path(store, "hl7v2", _send(tmp_path, "a.hl7", REPORT))
    renumbered = REPORT.replace("|1|5.5|mmol/L|||||F", "|2|5.5|mmol/L|||||D")
    second = ingest_path(store, "hl7v2", _send(tmp_path, "b.hl7", renumbered))
    assert_accounted(store, second)
    assert second.withdrawn == 0 and len(rows(store, "measurement")) == 1
    assert second.warnings["withdrawn.nothing_stored"] == 1
