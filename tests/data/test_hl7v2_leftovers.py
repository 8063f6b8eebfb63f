"""HL7 v2 leftovers: segments FLIP does not read are counted, repeated OBX-5 values are
each kept, a number after an empty repetition (`~5.4`) is read, and a European decimal
comma in a number is read."""

from flip.data.ingest import ingest_path
from tests.data.accounting import assert_accounted
from tests.data.stored import rows

MSH = "MSH|^~\\&|LAB|HOSP|EHR|HOSP|20230102100000||{type}|{control}|P|2.5.1"
PID = "PID|1||123^^^HOSP^MR||Doe^Jane||19700101|F"


def _ingest(store, tmp_path, *segments: str, kind: str = "ORU^R01"):
    message = "\r".join([MSH.format(type=kind, control="C1"), PID, *segments]) + "\r"
    (tmp_path / "m.hl7").write_text(message)
    return ingest_path(store, "hl7v2", tmp_path / "m.hl7")


def test_segments_not_read_are_counted_by_name(store, tmp_path):
    """NTE, ORC, SPM, NK1, IN1 and PD1 carry nothing FLIP stores: each is counted as
    skipped under `hl7.segment.not_read.NAME`, never dropped silently; the result loads."""
    report = _ingest(
        store,
        tmp_path,
        "PD1|||HOSP",
        "NK1|1|Doe^John|SPO",
        "IN1|1|PLAN1|INS1",
        "ORC|RE|P1|F1",
        "OBR|1|P1|F1|2345-7^Glu^LN|||20230102080000",
        "NTE|1||fasting sample",
        "SPM|1|S1||BLD",
        "OBX|1|NM|2345-7^Glucose^LN||5.5|mmol/L|||||F",
        "NTE|1||checked twice",
    )
    assert report.skipped_rules == {
        "hl7.segment.not_read.PD1": 1,
        "hl7.segment.not_read.NK1": 1,
        "hl7.segment.not_read.IN1": 1,
        "hl7.segment.not_read.ORC": 1,
        "hl7.segment.not_read.NTE": 2,
        "hl7.segment.not_read.SPM": 1,
    }, report.as_dict()
    assert [r["value_source_value"] for r in rows(store, "measurement")] == ["5.5"]
    assert_accounted(store, report)


def test_a_decimal_comma_is_read_with_a_counted_warning(store, tmp_path):
    """A European lab's `13,5` (NM, with a comparator, and SN) is 13.5, each counted under
    `hl7.OBX-5.decimal_comma`; an ambiguous comma (`1,2,3`, `1.000,5`) is still quarantined."""
    report = _ingest(
        store,
        tmp_path,
        "OBR|1||F1|58410-2^CBC^LN|||20230102080000",
        "OBX|1|NM|718-7^Hemoglobin^LN||13,5|g/dL|||||F",
        "OBX|2|NM|1988-5^CRP^LN||<0,5|mg/L|||||F",
        "OBX|3|SN|2093-3^Cholesterol^LN||>^4,2|mmol/L|||||F",
        "OBX|4|NM|777-3^Platelets^LN||1,2,3|10*9/L|||||F",
        "OBX|5|NM|6690-2^WBC^LN||1.000,5|10*9/L|||||F",
    )
    assert report.warnings["hl7.OBX-5.decimal_comma"] == 3, report.as_dict()
    assert report.rules == {"hl7.obx.value_not_numeric": 2}, report.as_dict()
    found = {
        r["measurement_source_value"]: (r["value_as_number"], r["operator_concept_id"])
        for r in rows(store, "measurement")
    }
    assert set(found) == {"718-7", "1988-5", "2093-3"}
    assert found["718-7"][0] == 13.5
    assert found["1988-5"] == (0.5, 4171756)
    assert found["2093-3"][1] == 4172704
    assert_accounted(store, report)


def test_each_coded_value_of_a_list_is_a_fact_and_a_repeated_number_is_quarantined(store, tmp_path):
    """A CWE list (`A^x^L~B^y^L`) is one observation per coded value, none dropped; an NM
    or SN with several values (`5.5~6.0`) says no single result: quarantined alone with
    its reason, never cut to its first value. The message's other results load."""
    report = _ingest(
        store,
        tmp_path,
        "OBR|1||F1|11475-1^Culture^LN|||20230102080000",
        "OBX|1|CWE|11475-1^Organism^LN||ECOLI^E. coli^L~KLEB^Klebsiella^L~^Yeast||||||F",
        "OBX|2|NM|718-7^Hemoglobin^LN||5.5~6.0|g/dL|||||F",
        "OBX|3|SN|2093-3^Cholesterol^LN||>^4.2~<^3.0|mmol/L|||||F",
        "OBX|4|NM|1988-5^CRP^LN||7|mg/L|||||F",
    )
    assert report.rules == {"hl7.obx.value_repeated": 2}, report.as_dict()
    found = sorted(
        (r["value_source_value"] or "", r["value_as_string"] or "")
        for r in rows(store, "observation")
        if r["observation_source_value"] == "11475-1"
    )
    assert found == [("", "Yeast"), ("ECOLI", ""), ("KLEB", "")]
    assert [r["measurement_source_value"] for r in rows(store, "measurement")] == ["1988-5"]
    assert_accounted(store, report)


def test_a_number_after_an_empty_repetition_is_read(store, tmp_path):
    """An NM or SN whose OBX-5 starts with an empty repetition (`~5.4`, `~<^0.5`) holds one
    value: it is the result, never a measurement without its value."""
    report = _ingest(
        store,
        tmp_path,
        "OBR|1||F1|24331-1^Lipid panel^LN|||20230102080000",
        "OBX|1|NM|718-7^Hemoglobin^LN||~5.4|g/dL|||||F",
        "OBX|2|SN|1988-5^CRP^LN||~<^0.5|mg/L|||||F",
    )
    assert report.quarantined == 0, report.rules
    found = {
        r["measurement_source_value"]: (r["value_as_number"], r["operator_concept_id"])
        for r in rows(store, "measurement")
    }
    assert found["718-7"][0] is not None
    assert found["1988-5"] == (0.5, 4171756)
    assert_accounted(store, report)


def test_an_untyped_number_after_an_empty_repetition_is_a_measurement(store, tmp_path):
    """Without OBX-2, `~140` with a unit is a number as `140` is."""
    report = _ingest(
        store,
        tmp_path,
        "OBR|1||F1|2951-2^Sodium^LN|||20230102080000",
        "OBX|1||2951-2^Sodium^LN||~140|mmol/L|||||F",
    )
    assert report.quarantined == 0, report.rules
    [measurement] = rows(store, "measurement")
    assert measurement["value_as_number"] == 140
    assert_accounted(store, report)
