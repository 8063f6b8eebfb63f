"""HL7 v2 ADT and ORU from files (any line ending, MLLP-framed) and over a real MLLP socket."""

import asyncio
import contextlib
import socket
import threading

import pytest
from sqlalchemy import select

from flip.data.cdm import schema
from flip.data.ingest import Ingestor, ingest_path
from flip.data.sources.hl7v2 import split_messages
from flip.data.sources.mllp import MllpListener, frame
from flip.data.terminology import Vocabulary
from tests.data.accounting import assert_accounted
from tests.data.stored import rows

A01 = (
    "MSH|^~\\&|PAS|HOSP|FLIP|SITE|20200101083000||ADT^A01|C1|P|2.5",
    "EVN|A01|20200101083000",
    "PID|1||1001^^^HOSP^MR||Doe^Jane||19500304|F",
    "PV1|1|I|WARD1||||||||||||||||V1|||||||||||||||||||||||||20200101083000",
    "DG1|1||I21.9^Acute MI^I10||20200101",
)
A03 = (
    "MSH|^~\\&|PAS|HOSP|FLIP|SITE|20200105100000||ADT^A03|C2|P|2.5",
    "PID|1||1001^^^HOSP^MR||Doe^Jane||19500304|F",
    "PV1|1|I|WARD1||||||||||||||||V1|||||||||||||||||||||||||20200101083000|20200105100000",
)
A04_OTHER = (
    "MSH|^~\\&|PAS|HOSP|FLIP|SITE|20200102090000||ADT^A04|C3|P|2.5",
    "PID|1||2002^^^HOSP^MR||Doe^J||19500304|F",
    "PV1|1|O|CLINIC||||||||||||||||V2|||||||||||||||||||||||||20200102090000",
)
ORU = (
    "MSH|^~\\&|LAB|HOSP|FLIP|SITE|20200102120000||ORU^R01|C4|P|2.5",
    "PID|1||2002^^^HOSP^MR||Doe^J||19500304|F",
    "OBR|1||ACC9|24331-1^Lipid panel^LN|||20200102",
    "OBX|1|NM|2093-3^Cholesterol^LN||5.9|mmol/L|||||F",
    "OBX|2|CE|72166-2^Smoking^LN||77176002^Smoker^SCT||||||F",
)
A40 = (
    "MSH|^~\\&|PAS|HOSP|FLIP|SITE|20200103090000||ADT^A40|C5|P|2.5",
    "PID|1||1001^^^HOSP^MR||Doe^Jane||19500304|F",
    "MRG|2002^^^HOSP^MR",
)
OUT_OF_ORDER = (
    "MSH|^~\\&|LAB|HOSP|FLIP|SITE|20200102120000||ORU^R01|C6|P|2.5",
    "OBX|1|NM|2093-3^Cholesterol^LN||5.9|mmol/L|||||F",
    "PID|1||3003^^^HOSP^MR||Roe^R||19600101|M",
)
NOT_NUMERIC = (
    "MSH|^~\\&|LAB|HOSP|FLIP|SITE|20200102120000||ORU^R01|C7|P|2.5",
    "PID|1||3003^^^HOSP^MR||Roe^R||19600101|M",
    "OBR|1||ACC10|2093-3^Cholesterol^LN",
    "OBX|1|NM|2093-3^Cholesterol^LN||high|mmol/L|||||F",
)


def _file(tmp_path, messages, separator: str, mllp: bool = False):
    body = b""
    for message in messages:
        text = separator.join(message) + separator
        body += frame(text) if mllp else text.encode()
    path = tmp_path / "feed.hl7"
    path.write_bytes(body)
    return path


@pytest.mark.parametrize("separator", ["\r", "\n", "\r\n"])
def test_split_handles_every_line_ending(separator):
    data = b"".join((separator.join(m) + separator).encode() for m in (A01, ORU))
    messages = [m for _, m in split_messages(data)]
    assert len(messages) == 2 and all(
        m.count(b"\r") == len(src) - 1 for m, src in zip(messages, (A01, ORU), strict=True)
    )


def test_adt_and_oru_land_in_the_cdm_and_a40_merges(store, tmp_path):
    path = _file(tmp_path, [A01, A03, A04_OTHER, ORU], "\n")
    report = ingest_path(store, "hl7v2", path)
    assert report.quarantined == 0, report.rules
    assert len(rows(store, "person")) == 2
    visits = {r["visit_source_value"]: r for r in rows(store, "visit_occurrence")}
    assert visits["IMP"]["visit_concept_id"] == 9201
    assert visits["IMP"]["visit_end_date"].isoformat() == "2020-01-05"
    (mi,) = rows(store, "condition_occurrence")
    assert mi["condition_concept_id"] == 4329847 and mi["condition_source_value"] == "I21.9"
    (chol,) = rows(store, "measurement")
    assert chol["measurement_concept_id"] == 3027114  # [Mass/volume]: kept in mg/dL
    assert round(chol["value_as_number"], 1) == 228.1 and chol["unit_concept_id"] == 8840
    assert (chol["value_source_value"], chol["unit_source_value"]) == ("5.9", "mmol/L")
    (smoking,) = rows(store, "observation")
    assert smoking["value_as_concept_id"] == 4298794

    merge = _file(tmp_path, [A40], "\r", mllp=True)
    assert ingest_path(store, "hl7v2", merge).quarantined == 0
    (person,) = rows(store, "person")
    assert {
        r["person_id"] for r in rows(store, "measurement") + rows(store, "visit_occurrence")
    } == {person["person_id"]}
    assert person["person_source_value"] == "1001"


def test_a_bad_segment_is_quarantined_alone_and_the_rest_of_its_message_loads(store, tmp_path):
    path = _file(tmp_path, [OUT_OF_ORDER, NOT_NUMERIC, A01], "\r\n")
    report = ingest_path(store, "hl7v2", path)
    assert report.rules == {"hl7.segment_order": 1, "hl7.obx.value_not_numeric": 1}
    assert sorted(r["person_source_value"] for r in rows(store, "person")) == [
        "1001",
        "3003",
    ]
    assert rows(store, "measurement") == []
    with store.connect() as conn:
        raw = conn.execute(select(schema.quarantine.c.raw)).scalars().all()
    assert any(b"OBX|1|NM|2093-3^Cholesterol^LN||high" in r for r in raw)
    assert_accounted(store, report)


def test_mllp_listener_acks_each_message(store):
    ingestor = Ingestor(store, Vocabulary.from_store(store), "hl7v2:mllp")
    ingestor.start("hl7v2", "mllp://127.0.0.1")
    listener = MllpListener(ingestor, port=0)
    ready = threading.Event()
    loop = asyncio.new_event_loop()

    def serve() -> None:
        with contextlib.suppress(asyncio.CancelledError):  # how this test stops it
            loop.run_until_complete(listener.serve(ready))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(10)
    acks = []
    with socket.create_connection(("127.0.0.1", listener.port), timeout=10) as sock:
        for message in (A01, NOT_NUMERIC):
            sock.sendall(frame("\r".join(message) + "\r"))
            acks.append(sock.recv(4096))
    loop.call_soon_threadsafe(lambda: [t.cancel() for t in asyncio.all_tasks(loop)])
    thread.join(timeout=5)
    report = ingestor.finish()
    assert (
        acks[0].startswith(b"\x0bMSH|") and b"MSA|AA|C1" in acks[0] and acks[0].endswith(b"\x1c\r")
    )
    assert b"MSA|AE|C7|hl7.obx.value_not_numeric" in acks[1]
    assert report.loaded > 0 and report.quarantined == 1
    assert len(rows(store, "person")) == 2


def test_results_sent_under_a_merged_identifier_later_in_the_feed_follow_the_merge(store, tmp_path):
    later = tuple(
        line.replace("C4", "C8").replace("ACC9", "ACC11").replace("20200102", "20200104")
        for line in ORU
    )
    path = _file(tmp_path, [A01, A04_OTHER, ORU, A40, later, A40], "\r")
    report = ingest_path(store, "hl7v2", path)
    assert report.quarantined == 0, report.rules
    (person,) = rows(store, "person")
    assert person["person_source_value"] == "1001"
    measured = rows(store, "measurement")
    assert len(measured) == 2 and {r["person_id"] for r in measured} == {person["person_id"]}
    assert_accounted(store, report)
    again = ingest_path(store, "hl7v2", path)
    assert (again.loaded, again.quarantined) == (0, 0), again.as_dict()
    assert len(rows(store, "person")) == 1
    assert_accounted(store, again)


def test_a_local_code_sent_with_a_standard_alternate_maps_through_the_alternate(store, tmp_path):
    local = (
        "MSH|^~\\&|LAB|HOSP|FLIP|SITE|20200102120000||ORU^R01|C9|P|2.5",
        "PID|1||2002^^^HOSP^MR||Doe^J||19500304|F",
        "OBR|1||ACC12|LIPID^Lipid panel^99LAB|||20200102",
        "OBX|1|NM|CHOL^Cholesterol^99LAB^14647-2^Cholesterol^LN||5.9|mmol/L|||||F",
        "OBX|2|NM|XYZ^Local only^99LAB||3|mmol/L|||||F",
        "DG1|1||4109^MI^99PAS^I21.9^Acute MI^I10||20200101",
    )
    report = ingest_path(store, "hl7v2", _file(tmp_path, [local], "\r"))
    assert report.quarantined == 0, report.rules
    assert report.unmapped == {"urn:hl7v2:99LAB|XYZ": 1}
    by_source = {r["measurement_source_value"]: r for r in rows(store, "measurement")}
    assert by_source["CHOL"]["measurement_concept_id"] == 3019900  # 14647-2, via the alternate
    assert by_source["XYZ"]["measurement_concept_id"] == 0  # no alternate: stays unmapped
    (mi,) = rows(store, "condition_occurrence")
    assert (mi["condition_concept_id"], mi["condition_source_value"]) == (4329847, "4109")
    assert_accounted(store, report)


def test_a_feed_split_over_daily_files_is_one_source_with_one_person(store, tmp_path):
    """The same patient in Monday's and Tuesday's file is one person, and Wednesday's
    A40 merges patients either day loaded."""
    days = {"adt_mon.hl7": [A01], "lab_tue.hl7": [A04_OTHER, ORU], "adt_wed.hl7": [A03, A40]}
    for name, messages in days.items():
        path = tmp_path / name
        path.write_bytes(_file(tmp_path, messages, "\r").read_bytes())
        report = ingest_path(store, "hl7v2", path)
        assert_accounted(store, report)
        assert report.quarantined == 0, report.rules
    (person,) = rows(store, "person")
    assert person["person_source_value"] == "1001"
    assert {r["person_id"] for r in rows(store, "measurement")} == {person["person_id"]}
