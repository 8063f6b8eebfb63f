"""HL7 v2 coded results (CWE/CE) that labs send as text only: the text is the value."""

from flip.data.ingest import ingest_path
from tests.data.accounting import assert_accounted
from tests.data.stored import rows


def test_a_coded_result_sent_as_text_only_keeps_its_text(store, tmp_path):
    """`CWE|…||^Yellow` (no code, the text in component 2) and `CWE|…||^^^^^^^^Pos` (the
    original text, component 9) keep their words as the value; one that carries neither
    code nor text is counted as having no value, never stored as a valueless fact."""
    message = "\r".join(
        [
            "MSH|^~\\&|LAB|HOSP|EHR|HOSP|20230102100000||ORU^R01|C1|P|2.5.1",
            "PID|1||123^^^HOSP^MR||Doe^Jane||19700101|F",
            "OBR|1||F1|24356-8^UA^LN|||20230102080000",
            "OBX|1|CWE|5778-6^Color^LN||^Yellow||||||F",
            "OBX|2|CE|600-7^Culture^LN||^^^^^^^^Pos||||||F",
            "OBX|3|CWE|5767-9^Clarity^LN||CLR^Clear^L||||||F",
            "OBX|4|CWE|5803-2^pH^LN||^^||||||F",
        ]
    )
    (tmp_path / "m.hl7").write_text(message + "\r")
    report = ingest_path(store, "hl7v2", tmp_path / "m.hl7")
    assert report.skipped_rules == {"hl7.obx.value_missing": 1}, report.as_dict()
    found = {
        r["observation_source_value"]: (r["value_as_string"], r["value_source_value"])
        for r in rows(store, "observation")
    }
    assert found == {
        "5778-6": ("Yellow", None),
        "600-7": ("Pos", None),
        "5767-9": (None, "CLR"),
    }
    assert_accounted(store, report)
