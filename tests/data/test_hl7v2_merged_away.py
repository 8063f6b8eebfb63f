"""After an A40, the retired (merged-away) identifier is remembered: what a later run sends
under it files under the surviving person, whose merge the run traces in source_record."""

from datetime import datetime

import pytest
from sqlalchemy import delete, insert, select, update

from flip.data.cdm import schema
from flip.data.cdm.rows import person_id
from flip.data.ingest import ingest_path
from tests.data.accounting import assert_accounted
from tests.data.stored import rows
from tests.data.test_hl7v2 import A01, A04_OTHER, A40, ORU, _file

MERGED_AWAY = "person.merged_away"

#: An update of the retired patient 2002 (new name, new address) with a visit, then a
#: result under that identifier, each sent after the merge.
A08_RETIRED = (
    "MSH|^~\\&|PAS|HOSP|FLIP|SITE|20200110090000||ADT^A08|C20|P|2.5",
    "PID|1||2002^^^HOSP^MR||Doe^Janet||19500304|F|||1 New Road",
    "PV1|1|O|CLINIC||||||||||||||||V3|||||||||||||||||||||||||20200110090000",
)
ORU_RETIRED = tuple(
    line.replace("C4", "C21").replace("ACC9", "ACC21").replace("20200102", "20200111")
    for line in ORU
)


def _ingest(store, tmp_path, name: str, messages):
    path = tmp_path / name
    path.write_bytes(_file(tmp_path, messages, "\r").read_bytes())
    report = ingest_path(store, "hl7v2", path)
    assert_accounted(store, report)
    return report


def test_the_merge_run_traces_its_merge_in_source_record(store, tmp_path):
    _ingest(store, tmp_path, "mon.hl7", [A01, A04_OTHER, ORU])
    merge = _ingest(store, tmp_path, "merge.hl7", [A40])
    assert (merge.read, merge.loaded, merge.quarantined) == (1, 1, 0), merge.as_dict()
    survivor = rows(store, "person")[0]["person_id"]
    source = schema.source_record
    with store.connect() as conn:
        traced = conn.execute(
            select(source.c.record_key, source.c.cdm_id, source.c.role).where(
                source.c.ingest_run_id == merge.run_id, source.c.cdm_table == "person"
            )
        ).all()
    assert ("merge/C5", survivor, "merges") in traced


def test_messages_under_a_merged_away_identifier_file_under_the_survivor(store, tmp_path):
    _ingest(store, tmp_path, "mon.hl7", [A01, A04_OTHER, ORU])
    _ingest(store, tmp_path, "merge.hl7", [A40])
    (survivor,) = rows(store, "person")
    later = _ingest(store, tmp_path, "later.hl7", [A08_RETIRED, ORU_RETIRED])
    assert later.quarantined == 0, later.rules
    assert later.skipped_rules[MERGED_AWAY] == 2, later.as_dict()
    assert rows(store, "person") == [survivor]
    owners = {r["person_id"] for r in rows(store, "measurement") + rows(store, "visit_occurrence")}
    assert owners == {survivor["person_id"]}
    assert len(rows(store, "measurement")) == 2 and len(rows(store, "visit_occurrence")) == 3


def test_re_reading_the_whole_feed_after_the_merge_revives_no_one(store, tmp_path):
    _ingest(store, tmp_path, "mon.hl7", [A01, A04_OTHER, ORU])
    _ingest(store, tmp_path, "merge.hl7", [A40])
    _ingest(store, tmp_path, "later.hl7", [A08_RETIRED, ORU_RETIRED])
    kept = {t: rows(store, t) for t in ("person", "measurement", "visit_occurrence")}
    again = _ingest(store, tmp_path, "all.hl7", [A01, A04_OTHER, ORU, A40, A08_RETIRED])
    assert (again.loaded, again.quarantined) == (0, 0), again.as_dict()
    assert {t: rows(store, t) for t in kept} == kept


def test_a_merge_of_a_merged_away_patient_into_a_third_follows_the_chain(store, tmp_path):
    third = (
        "MSH|^~\\&|PAS|HOSP|FLIP|SITE|20200104090000||ADT^A04|C30|P|2.5",
        "PID|1||3003^^^HOSP^MR||Roe^R||19600101|M",
    )
    onward = (
        "MSH|^~\\&|PAS|HOSP|FLIP|SITE|20200105090000||ADT^A40|C31|P|2.5",
        "PID|1||3003^^^HOSP^MR||Roe^R||19600101|M",
        "MRG|1001^^^HOSP^MR",
    )
    _ingest(store, tmp_path, "mon.hl7", [A01, A04_OTHER, ORU, third])
    _ingest(store, tmp_path, "merge.hl7", [A40])
    _ingest(store, tmp_path, "onward.hl7", [onward])
    (survivor,) = rows(store, "person")
    assert survivor["person_source_value"] == "3003"
    later = _ingest(store, tmp_path, "later.hl7", [ORU_RETIRED])
    assert later.quarantined == 0, later.rules
    assert {r["person_id"] for r in rows(store, "measurement")} == {survivor["person_id"]}


@pytest.mark.parametrize("event", ["A18", "A34", "A36"])
def test_the_older_merge_events_merge_like_an_a40(store, tmp_path, event):
    """HL7 v2.3's merge events (kept for backward compatibility, still sent by older
    feeds) carry PID and MRG as an A40 does."""
    older = (
        f"MSH|^~\\&|PAS|HOSP|FLIP|SITE|20200103090000||ADT^{event}|C40|P|2.3",
        f"EVN|{event}|20200103090000",
        "PID|1||1001^^^HOSP^MR||Doe^Jane||19500304|F",
        "MRG|2002^^^HOSP^MR||ACC2002",
    )
    _ingest(store, tmp_path, "mon.hl7", [A01, A04_OTHER, ORU])
    merge = _ingest(store, tmp_path, "merge.hl7", [older])
    assert (merge.loaded, merge.skipped) == (1, 0), merge.as_dict()
    (survivor,) = rows(store, "person")
    assert survivor["person_source_value"] == "1001"
    assert {r["person_id"] for r in rows(store, "measurement")} == {survivor["person_id"]}


def test_a_second_merge_of_a_retired_identifier_into_someone_else_is_quarantined(store, tmp_path):
    third = (
        "MSH|^~\\&|PAS|HOSP|FLIP|SITE|20200104090000||ADT^A04|C30|P|2.5",
        "PID|1||3003^^^HOSP^MR||Roe^R||19600101|M",
    )
    elsewhere = (
        "MSH|^~\\&|PAS|HOSP|FLIP|SITE|20200105090000||ADT^A40|C32|P|2.5",
        "PID|1||3003^^^HOSP^MR||Roe^R||19600101|M",
        "MRG|2002^^^HOSP^MR",
    )
    _ingest(store, tmp_path, "mon.hl7", [A01, A04_OTHER, ORU, third])
    _ingest(store, tmp_path, "merge.hl7", [A40])
    report = _ingest(store, tmp_path, "again.hl7", [elsewhere])
    assert report.rules == {"merge.already_merged": 1}, report.as_dict()
    assert len(rows(store, "person")) == 2


def _as_before_schema_8(store) -> None:
    """Leave the store as FLIP left it after an A40 before schema 8: the merged-away
    patient's provenance still names its removed person (role produced), the merge is
    untraced, facts carry no patient key, and the store says schema 7."""
    source = schema.source_record
    with store.begin() as conn:
        conn.execute(
            update(source)
            .where(source.c.role == schema.MERGED)
            .values(role=schema.PRODUCED, cdm_id=person_id("hl7v2", "patient/HOSP/2002"))
        )
        conn.execute(delete(source).where(source.c.role == schema.MERGES))
        conn.execute(update(source).values(person_key=None))
        conn.execute(delete(schema.flip_schema))
        conn.execute(insert(schema.flip_schema).values(version=7, migrated_at=datetime(2026, 1, 1)))


def test_a_store_merged_before_schema_8_routes_the_retired_identifier(store, tmp_path):
    _ingest(store, tmp_path, "mon.hl7", [A01, A04_OTHER, ORU])
    _ingest(store, tmp_path, "merge.hl7", [A40])
    (survivor,) = rows(store, "person")
    _as_before_schema_8(store)
    store.create()  # what opening the store with this FLIP does
    store.check()
    later = _ingest(store, tmp_path, "later.hl7", [A08_RETIRED, ORU_RETIRED])
    assert later.quarantined == 0, later.rules
    assert later.skipped_rules[MERGED_AWAY] == 2, later.as_dict()
    assert rows(store, "person") == [survivor]
    assert {r["person_id"] for r in rows(store, "measurement")} == {survivor["person_id"]}
