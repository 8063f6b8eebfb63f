"""HL7 A13 (cancel discharge) without PV1-19 kept for good, as real feeds
deliver it: late discharges of other stays, a backfill behind a live feed, a merge
between the A13 and its A03, a prune re-export, and A11s read before their A01."""

from pathlib import Path

from flip.data.ingest import ingest_path
from tests.data.accounting import assert_accounted
from tests.data.test_hl7v2_discharge_matching import (
    BOTH_ENDED,
    CANCEL_JAN,
    CANCEL_LAST,
    FEB_IN,
    FEB_OPEN,
    FEB_OUT,
    JAN_IN,
    JAN_OPEN,
    JAN_OUT,
    MERGE,
    REGISTER,
    _as,
    _folder,
    _visits,
)
from tests.data.test_hl7v2_fidelity import _send


def _runs(store, tmp_path: Path, name: str, *messages: tuple[str, ...], **kw) -> list:
    """Each message in a run of its own, each run accounted for."""
    reports = []
    for i, message in enumerate(messages):
        feed = _send(tmp_path / f"{name}{i}", "m.hl7", *message)
        reports.append(ingest_path(store, "hl7v2", feed, **kw))
        assert_accounted(store, reports[-1])
    return reports


def _merged_between_a13_and_a03() -> tuple:
    """901 admitted, its A13 (no PV1-19) sent, A40 merges 901 into 900, then 901's A03."""
    return (
        REGISTER,
        _as("901", REGISTER),
        _as("901", JAN_IN),
        _as("901", CANCEL_JAN),
        MERGE,
        _as("901", JAN_OUT),
    )


def _assert_open_with_and_without_the_merge(store, tmp_path: Path, plain, merged) -> None:
    """Each (source system, messages) run one message a run: January's stay stays open
    without the merge, and (each system's own) with it."""
    ends = []
    for system, messages in (plain, merged):
        _runs(store, tmp_path, system, *messages, source_system=system)
        ends.append(_visits(store))
    assert ends[0] == [JAN_OPEN]
    assert ends[1] == [JAN_OPEN, JAN_OPEN], ends


def test_an_a13_that_reopened_the_latest_stay_does_not_cancel_an_earlier_stays_late_a03(
    store, tmp_path
):
    """A01 Jan, A01 Feb, A03 Feb, A13 (no PV1-19/44: it reopens Feb), then the January A03
    delivered late: the A13 cancelled one discharge (February's, now open again); the
    January discharge must still end the January stay."""
    _runs(store, tmp_path, "r", JAN_IN, FEB_IN, FEB_OUT, CANCEL_LAST)
    assert _visits(store) == [JAN_OPEN, FEB_OPEN]
    (late,) = _runs(store, tmp_path, "late", JAN_OUT)
    assert _visits(store) == [BOTH_ENDED[0], FEB_OPEN], late.as_dict()


def test_a_backfill_behind_a_live_a13_keeps_the_patients_older_discharges(store, tmp_path):
    """Live feed first: an A13 without PV1-19/44 (cancelling the February discharge).
    Then the site backfills the history (A01/A03 Jan, A01/A03 Feb) as one folder: at most
    the latest discharge before the A13 is cancelled; January's stay ends."""
    _runs(store, tmp_path, "live", REGISTER, CANCEL_LAST)
    backfill = ingest_path(
        store, "hl7v2", _folder(tmp_path / "b", JAN_IN, JAN_OUT, FEB_IN, FEB_OUT)
    )
    assert_accounted(store, backfill)
    assert BOTH_ENDED[0] in _visits(store), (_visits(store), backfill.as_dict())


def test_an_a13_kept_before_a_merge_cancels_its_a03_sent_under_the_retired_mrn(store, tmp_path):
    """901 admitted; its A13 (no PV1-19) delivered before its A03 is kept; A40 merges 901
    into 900; the lagging system then sends the A03 under 901. Without the merge the A03
    is dropped (stay open); with it, the kept A13 must still cancel it."""
    plain = ("p", (REGISTER, JAN_IN, CANCEL_JAN, JAN_OUT))
    merged = ("m", _merged_between_a13_and_a03())
    _assert_open_with_and_without_the_merge(store, tmp_path, plain, merged)


def test_an_a13_sent_under_the_retired_mrn_drops_the_discharge_kept_under_the_survivor(
    store, tmp_path
):
    """A03 (no PV1-19) kept under 900 (read before its A01), A40 merges 901 into 900, the
    lagging system sends the A13 under 901, then the A01: as without the merge (A13 under
    900), the A13 drops the kept A03 and the stay stays open."""
    plain = ("p", (REGISTER, JAN_OUT, CANCEL_JAN, JAN_IN))
    merged = ("m", (REGISTER, _as("901", REGISTER), JAN_OUT, MERGE, _as("901", CANCEL_JAN), JAN_IN))
    _assert_open_with_and_without_the_merge(store, tmp_path, plain, merged)


def test_an_a13_kept_before_a_merge_cancels_its_a03_in_one_folder(store, tmp_path):
    """The same messages as one folder run."""
    report = ingest_path(store, "hl7v2", _folder(tmp_path, *_merged_between_a13_and_a03()))
    assert_accounted(store, report)
    assert _visits(store) == [JAN_OPEN], report.as_dict()


def test_a_prune_re_export_without_the_a13_that_reopened_a_stay_ends_it(store, tmp_path):
    """A01, A03, A13 (reopens the stay); the full re-export (--prune) holds A01 and A03
    only (the A13 was withdrawn at source): the store must say what the export says (the
    stay's stored version, the A13's, counts as its admission's only); a re-export still
    holding the A13 changes nothing."""
    first = _folder(tmp_path / "a", JAN_IN, JAN_OUT, CANCEL_JAN)
    assert_accounted(store, ingest_path(store, "hl7v2", first, source_system="pas"))
    assert _visits(store) == [JAN_OPEN]
    same = _folder(tmp_path / "s", JAN_IN, JAN_OUT, CANCEL_JAN)
    unchanged = ingest_path(store, "hl7v2", same, prune=True, source_system="pas")
    assert_accounted(store, unchanged)
    assert unchanged.loaded == 0 and _visits(store) == [JAN_OPEN], unchanged.as_dict()
    export = _folder(tmp_path / "b", JAN_IN, JAN_OUT)
    report = ingest_path(store, "hl7v2", export, prune=True, source_system="pas")
    assert_accounted(store, report)
    assert _visits(store) == [BOTH_ENDED[0]], report.as_dict()


def test_a_prune_re_export_without_a_kept_a13_does_not_cancel_its_own_a03(store, tmp_path):
    """A01 and an A13 delivered before its A03 (kept: it opened nothing). The full
    re-export (--prune) holds A01 and A03, not the A13: the A13 is dropped (warning
    prune.kept_discharge_dropped), so the export's A03 must end the stay."""
    first = _folder(tmp_path / "a", JAN_IN, CANCEL_JAN)
    assert_accounted(store, ingest_path(store, "hl7v2", first, source_system="pas"))
    export = _folder(tmp_path / "b", JAN_IN, JAN_OUT)
    report = ingest_path(store, "hl7v2", export, prune=True, source_system="pas")
    assert_accounted(store, report)
    assert report.warnings["prune.kept_discharge_dropped"] == 1, report.as_dict()
    assert _visits(store) == [BOTH_ENDED[0]], report.as_dict()


def test_a_re_run_of_a_folder_ending_with_an_a13_changes_nothing(store, tmp_path):
    """Two stays (A01/A03 Jan, A01/A03 Feb) and an A13 without PV1-19/44 (it reopens Feb),
    one folder read twice: the second run loads nothing and January stays ended (a re-read
    A13 must not reopen the next-latest ended stay)."""
    folder = _folder(tmp_path, JAN_IN, JAN_OUT, FEB_IN, FEB_OUT, CANCEL_LAST)
    first = ingest_path(store, "hl7v2", folder)
    assert_accounted(store, first)
    assert _visits(store) == [BOTH_ENDED[0], FEB_OPEN], first.as_dict()
    again = ingest_path(store, "hl7v2", folder)
    assert_accounted(store, again)
    assert _visits(store) == [BOTH_ENDED[0], FEB_OPEN], again.as_dict()
    assert again.loaded == 0, again.as_dict()


def test_an_a13_retransmitted_by_the_sender_reopens_nothing_more(store, tmp_path):
    """MLLP senders re-send a message whose ACK was lost (same MSH-10): two stays ended,
    the A13 without PV1-19/44 reopens February; its retransmission, one run each as a
    listener or per-message drop delivers them, must leave January ended."""
    reports = _runs(store, tmp_path, "r", JAN_IN, JAN_OUT, FEB_IN, FEB_OUT, CANCEL_LAST)
    assert _visits(store) == [BOTH_ENDED[0], FEB_OPEN]
    (again,) = _runs(store, tmp_path, "dup", CANCEL_LAST)
    assert _visits(store) == [BOTH_ENDED[0], FEB_OPEN], (reports[-1].as_dict(), again.as_dict())
