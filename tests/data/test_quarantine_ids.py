"""Quarantine rows: one per rejected record, kept across replaced files, and a failed
batch leaves neither rows nor counts behind."""

import pytest
from sqlalchemy import func, select

from flip.data.cdm import schema
from flip.data.ingest import Ingestor, ingest_path
from flip.data.sources.hl7v2 import parse_message
from flip.data.sources.mllp import MllpListener
from flip.data.terminology import Vocabulary
from tests.data.accounting import assert_accounted

#: Two results without OBX-3 and with the same OBX-1 (as the review's dupq.hl7), and one good.
DUPLICATE_OBX = "\r".join(
    (
        "MSH|^~\\&|LAB|HOSP|FLIP|SITE|20240101120000||ORU^R01|C1|P|2.5",
        "PID|||MRN1^^^HOSP^MR||DOE^JANE||19700101|F",
        "OBR|1|P1|F1|GLU^Glucose",
        "OBX|1|NM||1|5.5|mmol/L|||||F|||20240101100000",
        "OBX|1|NM||1|6.5|mmol/L|||||F|||20240101100000",
        "OBX|2|NM|2345-7^Glucose^LN|1|5.5|mmol/L|||||F|||20240101100000",
    )
)


def _quarantine_rows(store) -> int:
    with store.connect() as conn:
        return conn.execute(select(func.count()).select_from(schema.quarantine)).scalar_one()


@pytest.mark.parametrize("copies", [1, 2])
def test_rejected_results_with_the_same_key_each_keep_a_quarantine_row(store, tmp_path, copies):
    # copies=2: the same message twice in one file, so identical rejected results repeat
    path = tmp_path / "dupq.hl7"
    path.write_bytes(("\r".join([DUPLICATE_OBX] * copies) + "\r").encode())
    report = ingest_path(store, "hl7v2", path)
    assert report.quarantined == 2 * copies and _quarantine_rows(store) == 2 * copies
    assert report.loaded >= 2  # the patient and the good result
    assert_accounted(store, report)
    again = ingest_path(store, "hl7v2", path)
    assert again.quarantined == 2 * copies and _quarantine_rows(store) == 2 * copies
    assert_accounted(store, again)


def test_a_replaced_file_at_the_same_path_keeps_the_earlier_quarantine_rows(store, tmp_path):
    path = tmp_path / "feed.hl7"
    path.write_bytes((DUPLICATE_OBX + "\r").encode())
    ingest_path(store, "hl7v2", path)
    changed = DUPLICATE_OBX.replace("5.5|", "7.5|").replace("6.5|", "8.5|")
    path.write_bytes((changed + "\r").encode())
    ingest_path(store, "hl7v2", path)
    assert _quarantine_rows(store) == 4


def test_a_failed_batch_leaves_the_reports_counts_as_they_were(store):
    ingestor = Ingestor(store, Vocabulary.from_store(store), "lab")
    report = ingestor.start("hl7v2", "test")
    ingestor.write(parse_message(DUPLICATE_OBX.encode(), "m#1"), final=True)
    before = report.as_dict()
    broken = ingestor.writer._quarantine

    def fail(*args, **kwargs):
        raise RuntimeError("disk full")

    ingestor.writer._quarantine = fail
    second = DUPLICATE_OBX.replace("MRN1", "MRN2").replace("|C1|", "|C2|")
    with pytest.raises(RuntimeError):
        ingestor.write(parse_message(second.encode(), "m#2"), final=True)
    assert report.as_dict() == before
    ingestor.writer._quarantine = broken
    ingestor.write(parse_message(second.encode(), "m#2"), final=True)
    assert_accounted(store, ingestor.finish())


def test_the_listener_answers_ae_when_a_message_cannot_be_written(store):
    ingestor = Ingestor(store, Vocabulary.from_store(store), "lab")
    ingestor.start("hl7v2", "mllp://test")

    def fail(*args, **kwargs):
        raise RuntimeError("disk full")

    ingestor.writer._quarantine = fail
    ack = MllpListener(ingestor).handle(DUPLICATE_OBX.encode(), "peer")
    assert ack.split("\r")[1].startswith("MSA|AE|C1|not written: RuntimeError: disk full")
    assert_accounted(store, ingestor.finish())


def test_a_record_quarantined_then_loaded_after_a_fix_leaves_the_quarantine(store, tmp_path):
    # the review's sq/: a day-first date quarantined, then read with --date-order dmy
    folder = tmp_path / "sq"
    folder.mkdir()
    (folder / "person.csv").write_text(
        "person_id,gender_concept_id,year_of_birth,race_concept_id,ethnicity_concept_id\n"
        "1,8507,1950,0,0\n"
    )
    (folder / "condition_occurrence.csv").write_text(
        "condition_occurrence_id,person_id,condition_concept_id,condition_start_date,"
        "condition_type_concept_id\n11,1,201826,01/02/2020,32817\n"
    )
    first = ingest_path(store, "omop", folder)
    assert first.quarantined == 1 and _quarantine_rows(store) == 1
    fixed = ingest_path(store, "omop", folder, date_order="dmy")
    assert_accounted(store, fixed)
    assert fixed.loaded == 2 and _quarantine_rows(store) == 0
