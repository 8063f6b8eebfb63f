"""HL7 v2.5 A24 (link patient information) and A37 (unlink patient information): a link
makes two identifiers one person, as a merge does; an unlink gives the second identifier
its person back, with every record filed under it, before or after the link."""

from flip.data.ingest import ingest_path
from tests.data.accounting import assert_accounted
from tests.data.stored import rows
from tests.data.test_hl7v2 import A01, A04_OTHER, ORU, _file
from tests.data.test_hl7v2_merged_away import ORU_RETIRED

#: Shaped as the HL7 v2.5 ADT_A24 / ADT_A37 structures (chapter 3; as hl7apy 1.3.5 defines
#: them in hl7apy/v2_5/messages.py: MSH, SFT*, EVN, then for each patient PID, PD1?, PV1?,
#: DB1*), as a PAS sends them: a "not applicable" PV1 (class N), a DB1 and an SFT.
A24 = (
    "MSH|^~\\&|PAS|HOSP|FLIP|SITE|20200103090000||ADT^A24^ADT_A24|C9|P|2.5",
    "EVN|A24|20200103090000",
    "PID|1||1001^^^HOSP^MR~9434765919^^^NHS^NH||Doe^Jane||19500304|F",
    "PD1|||Castle Surgery^^Y01234",
    "PV1|1|N",
    "PID|2||2002^^^HOSP^MR||Doe^J||19500304|F",
    "PD1|||Castle Surgery^^Y01234",
    "PV1|1|N",
    "DB1|1|PT||N",
)
A37 = (
    "MSH|^~\\&|PAS|HOSP|FLIP|SITE|20200115090000||ADT^A37^ADT_A37|C10|P|2.5",
    "SFT|Acme PAS Ltd|7.2|PAS|7.2.14",
    "EVN|A37|20200115090000",
    "PID|1||1001^^^HOSP^MR~9434765919^^^NHS^NH||Doe^Jane||19500304|F",
    "PD1|||Castle Surgery^^Y01234",
    "PV1|1|N",
    "PID|2||2002^^^HOSP^MR||Doe^Joan||19520817|F",
    "PD1|||Castle Surgery^^Y01234",
    "PV1|1|N",
)


def _ingest(store, tmp_path, name: str, messages):
    path = tmp_path / name
    path.write_bytes(_file(tmp_path, messages, "\r").read_bytes())
    report = ingest_path(store, "hl7v2", path)
    assert_accounted(store, report)
    return report


def _owners(store, table: str) -> set[str]:
    """The person_source_value of the persons the rows of `table` belong to."""
    persons = {p["person_id"]: p["person_source_value"] for p in rows(store, "person")}
    return {persons[r["person_id"]] for r in rows(store, table)}


def test_an_a24_links_the_second_identifier_into_the_first_person(store, tmp_path):
    _ingest(store, tmp_path, "mon.hl7", [A01, A04_OTHER, ORU])
    link = _ingest(store, tmp_path, "link.hl7", [A24])
    assert (link.loaded, link.quarantined) == (1, 0), link.as_dict()
    # its PD1, PV1 (class N) and DB1 segments are counted as not read, by name
    assert link.skipped_rules == {
        "hl7.segment.not_read.PD1": 2,
        "hl7.segment.not_read.PV1": 2,
        "hl7.segment.not_read.DB1": 1,
    }, link.as_dict()
    assert [p["person_source_value"] for p in rows(store, "person")] == ["1001"]
    assert _owners(store, "measurement") == {"1001"}


def test_an_a37_gives_the_unlinked_identifier_its_person_and_records_back(store, tmp_path):
    _ingest(store, tmp_path, "mon.hl7", [A01, A04_OTHER, ORU])
    _ingest(store, tmp_path, "link.hl7", [A24])
    unlink = _ingest(store, tmp_path, "unlink.hl7", [A37])
    assert (unlink.loaded, unlink.quarantined) == (1, 0), unlink.as_dict()
    assert unlink.read == 1 + unlink.skipped, unlink.as_dict()
    persons = {p["person_source_value"]: p for p in rows(store, "person")}
    assert set(persons) == {"1001", "2002"}
    assert persons["2002"]["year_of_birth"] == 1952  # as the A37's second PID says now
    assert _owners(store, "measurement") == {"2002"}
    assert _owners(store, "condition_occurrence") == {"1001"}
    visits = {r["visit_source_value"]: r["person_id"] for r in rows(store, "visit_occurrence")}
    assert visits == {"IMP": persons["1001"]["person_id"], "AMB": persons["2002"]["person_id"]}
    periods = {p["person_id"] for p in rows(store, "observation_period")}
    assert periods == {persons["1001"]["person_id"], persons["2002"]["person_id"]}


def test_records_sent_under_the_second_identifier_while_linked_go_back_too(store, tmp_path):
    _ingest(store, tmp_path, "mon.hl7", [A01, A04_OTHER])
    _ingest(store, tmp_path, "link.hl7", [A24])
    linked = _ingest(store, tmp_path, "linked.hl7", [ORU_RETIRED])
    assert linked.quarantined == 0 and _owners(store, "measurement") == {"1001"}
    _ingest(store, tmp_path, "unlink.hl7", [A37])
    assert _owners(store, "measurement") == {"2002"}
    later = _ingest(store, tmp_path, "later.hl7", [ORU])
    assert later.skipped_rules.get("person.merged_away", 0) == 0, later.as_dict()
    assert _owners(store, "measurement") == {"2002"}


def test_link_and_unlink_in_one_file_and_its_re_read_leave_two_persons(store, tmp_path):
    feed = [A01, A04_OTHER, ORU, A24, A37]
    first = _ingest(store, tmp_path, "feed.hl7", feed)
    assert first.quarantined == 0, first.rules
    kept = {t: rows(store, t) for t in ("person", "measurement", "visit_occurrence")}
    assert len(kept["person"]) == 2 and _owners(store, "measurement") == {"2002"}
    again = _ingest(store, tmp_path, "feed.hl7", feed)
    assert again.quarantined == 0, again.rules
    assert {t: rows(store, t) for t in kept} == kept


def test_an_a37_of_identifiers_never_linked_is_quarantined_alone(store, tmp_path):
    _ingest(store, tmp_path, "mon.hl7", [A01, A04_OTHER])
    report = _ingest(store, tmp_path, "unlink.hl7", [A37, ORU])
    assert report.rules == {"hl7.unlink.not_linked": 1}, report.as_dict()
    assert report.loaded == 3  # the ORU's patient and its two results
    assert len(rows(store, "person")) == 2


def test_an_a37_with_one_pid_is_quarantined(store, tmp_path):
    _ingest(store, tmp_path, "mon.hl7", [A01, A04_OTHER])
    _ingest(store, tmp_path, "link.hl7", [A24])
    report = _ingest(store, tmp_path, "unlink.hl7", [A37[:5]])
    assert report.rules == {"hl7.link.pid_missing": 1}, report.as_dict()
    assert len(rows(store, "person")) == 1


def test_the_same_a37_read_again_changes_nothing(store, tmp_path):
    _ingest(store, tmp_path, "mon.hl7", [A01, A04_OTHER, ORU])
    _ingest(store, tmp_path, "link.hl7", [A24])
    _ingest(store, tmp_path, "unlink.hl7", [A37])
    kept = {t: rows(store, t) for t in ("person", "measurement", "visit_occurrence")}
    again = _ingest(store, tmp_path, "unlink.hl7", [A37])
    assert (again.unchanged, again.quarantined) == (1, 0), again.as_dict()
    assert {t: rows(store, t) for t in kept} == kept
