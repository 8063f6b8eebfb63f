"""A batch whose write fails leaves nothing behind: not in the store, and not in what the
run remembers (records left waiting for their patient, persons seen, merges), so that
its records, sent again, load as the first time."""

from pathlib import Path

import pytest

from flip.data.ingest import Ingestor
from flip.data.sources.fhir import read_path
from flip.data.sources.hl7v2 import parse_message
from flip.data.terminology import Vocabulary
from tests.data.accounting import assert_accounted
from tests.data.stored import rows, write_ndjson

PATIENT = {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1960-02-01"}
CONDITION = {
    "resourceType": "Condition",
    "id": "c1",
    "subject": {"reference": "Patient/p1"},
    "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]},
    "onsetDateTime": "2015-03-02",
}
A04 = (
    "MSH|^~\\&|PAS|HOSP|FLIP|SITE|20200101090000||ADT^A04|{id}|P|2.5\r"
    "PID|1||{mrn}^^^HOSP^MR||Doe^J||19500304|F"
)
A40 = (
    "MSH|^~\\&|PAS|HOSP|FLIP|SITE|20200103090000||ADT^A40|M1|P|2.5\r"
    "PID|1||1001^^^HOSP^MR||Doe^J||19500304|F\r"
    "MRG|2002^^^HOSP^MR"
)
ORU = (
    "MSH|^~\\&|LAB|HOSP|FLIP|SITE|20200104120000||ORU^R01|R1|P|2.5\r"
    "PID|1||2002^^^HOSP^MR||Doe^J||19500304|F\r"
    "OBR|1||ACC9|2093-3^Cholesterol^LN|||20200104\r"
    "OBX|1|NM|2093-3^Cholesterol^LN||5.9|mmol/L|||||F"
)


class Failure(Exception):
    """The write that fails (a lost connection, a full disk)."""


def _failing_once(ingestor: Ingestor, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the ingestor's next batch write fail, as a store would, after mapping it."""
    write = ingestor.writer.write

    def fail(batch, report):
        monkeypatch.setattr(ingestor.writer, "write", write)
        raise Failure("the store went away")

    monkeypatch.setattr(ingestor.writer, "write", fail)


def _records(tmp_path: Path, name: str, resources: list[dict]) -> list:
    return list(read_path(write_ndjson(tmp_path / name, resources)))


def test_records_left_waiting_by_a_failed_batch_are_not_loaded_at_the_end(
    store, tmp_path, monkeypatch
):
    ingestor = Ingestor(store, Vocabulary.from_store(store), "fhir:ehr")
    ingestor.start("fhir", "ehr")
    _failing_once(ingestor, monkeypatch)
    with pytest.raises(Failure):
        ingestor.write(_records(tmp_path, "a.ndjson", [CONDITION]))
    ingestor.write(_records(tmp_path, "b.ndjson", [PATIENT]))
    report = ingestor.finish()
    assert_accounted(store, report)
    assert rows(store, "condition_occurrence") == [], "its batch was not written"
    assert (report.read, report.loaded) == (1, 1)
    again = Ingestor(store, Vocabulary.from_store(store), "fhir:ehr")
    resent = again.run(_records(tmp_path, "c.ndjson", [CONDITION, PATIENT]), kind="fhir", uri="ehr")
    assert_accounted(store, resent)
    assert (resent.loaded, resent.unchanged) == (1, 1)
    assert len(rows(store, "condition_occurrence")) == 1


def test_a_merge_whose_message_failed_does_not_steer_later_messages(store, monkeypatch):
    ingestor = Ingestor(store, Vocabulary.from_store(store), "hl7v2:mllp")
    ingestor.start("hl7v2", "mllp://test")

    def send(message: str) -> None:
        ingestor.write(parse_message(message.encode(), "mllp"), final=True)

    send(A04.format(id="C1", mrn="1001"))
    send(A04.format(id="C2", mrn="2002"))
    _failing_once(ingestor, monkeypatch)
    with pytest.raises(Failure):
        send(A40)
    send(ORU)
    report = ingestor.finish()
    assert_accounted(store, report)
    persons = {p["person_source_value"]: p["person_id"] for p in rows(store, "person")}
    assert sorted(persons) == ["1001", "2002"], "the merge was not written"
    (result,) = rows(store, "measurement")
    assert result["person_id"] == persons["2002"]
