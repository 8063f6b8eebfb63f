"""HL7 A03s without visit number (PV1-19) delivered before or after their admissions,
several stays per patient: each ends the stay it fits, the store ends the same whatever
the delivery order, and each run's counters equal what it read."""

from pathlib import Path

import pytest

from flip.data.ingest import ingest_path
from tests.data.accounting import assert_accounted
from tests.data.stored import rows
from tests.data.test_hl7v2_fidelity import _adt, _send


def _pv1(start: str, end: str = "") -> str:
    """A PV1 without visit number: admitted at `start` (PV1-44), discharged at `end` (PV1-45)."""
    return "PV1|1|I|W1" + "|" * 41 + start + (f"|{end}" if end else "")


JAN_IN = _adt("A01", "C1", "20230101080000", _pv1("20230101075500"))
JAN_OUT = _adt("A03", "C2", "20230105120000", _pv1("20230101075500", "20230105113000"))
FEB_IN = _adt("A01", "C3", "20230201080000", _pv1("20230201075500"))
FEB_OUT = _adt("A03", "C4", "20230205120000", _pv1("20230201075500", "20230205113000"))
BOTH_ENDED = [
    ("2023-01-01 07:55:00", "2023-01-05 11:30:00"),
    ("2023-02-01 07:55:00", "2023-02-05 11:30:00"),
]


def _visits(store) -> list[tuple[str, str]]:
    return sorted(
        (str(v["visit_start_datetime"]), str(v["visit_end_datetime"]))
        for v in rows(store, "visit_occurrence")
    )


def _folder(tmp_path: Path, *messages: tuple[str, ...]) -> Path:
    folder = tmp_path / "m"
    tmp_path.mkdir(exist_ok=True)
    for i, message in enumerate(messages):
        _send(folder, f"{i}.hl7", *message)
    return folder


def _one_by_one(store, tmp_path: Path, messages, system: str | None = None) -> None:
    """Ingest each message in a run of its own (as a listener or per-message drop sends
    them), checking each run's accounting."""
    for i, message in enumerate(messages):
        feed = _send(tmp_path / f"{system or ''}{i}", "m.hl7", *message)
        assert_accounted(store, ingest_path(store, "hl7v2", feed, source_system=system))


def test_a_folder_with_two_stays_whose_discharges_sort_first_ends_both(store, tmp_path):
    folder = _folder(tmp_path, JAN_OUT, FEB_OUT, JAN_IN, FEB_IN)
    report = ingest_path(store, "hl7v2", folder)
    assert _visits(store) == BOTH_ENDED, report.as_dict()
    assert_accounted(store, report)


def test_a_folder_with_a_discharge_sent_twice_before_two_admissions_is_accounted(store, tmp_path):
    resent = _adt("A03", "C9", "20230105130000", _pv1("20230101075500", "20230105113000"))
    report = ingest_path(store, "hl7v2", _folder(tmp_path, JAN_OUT, resent, JAN_IN, FEB_IN))
    assert_accounted(store, report)
    assert _visits(store) == [BOTH_ENDED[0], ("2023-02-01 07:55:00", "None")]


def test_a_later_stays_discharge_kept_waiting_does_not_end_an_earlier_admission(store, tmp_path):
    folder = _folder(tmp_path, FEB_OUT, JAN_IN, JAN_OUT, FEB_IN)
    for path in sorted(folder.iterdir()):  # delivered one message at a time, in this order
        assert_accounted(store, ingest_path(store, "hl7v2", path))
    assert _visits(store) == BOTH_ENDED


def test_a_re_run_after_out_of_order_delivery_counts_every_record(store, tmp_path):
    folder = _folder(tmp_path, JAN_OUT, FEB_OUT, JAN_IN, FEB_IN)
    for path in sorted(folder.iterdir()):
        ingest_path(store, "hl7v2", path)
    before = _visits(store)
    again = ingest_path(store, "hl7v2", folder)
    assert_accounted(store, again)
    assert again.loaded == 0 and _visits(store) == before


def test_a_prune_re_export_without_the_kept_discharge_does_not_apply_it(store, tmp_path):
    first = _send(tmp_path / "a", "0.hl7", *JAN_OUT)
    assert_accounted(store, ingest_path(store, "hl7v2", first, source_system="pas"))
    export = _send(tmp_path / "b", "0.hl7", *JAN_IN)  # the full re-export no longer holds the A03
    report = ingest_path(store, "hl7v2", export, prune=True, source_system="pas")
    assert_accounted(store, report)
    assert _visits(store) == [("2023-01-01 07:55:00", "None")], report.as_dict()


def _as(patient: str, message: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(s.replace("PID|1||900^", f"PID|1||{patient}^") for s in message)


MERGE = (
    "MSH|^~\\&|PAS|HOSP|EHR|HOSP|20230102090000||ADT^A40|M1|P|2.4",
    "EVN|A40|20230102090000",
    "PID|1||900^^^HOSP^MR||X^Y||19700101|F",
    "MRG|901^^^HOSP^MR",
)


#: A patient's registration (A08 without PV1): a person, no visit.
REGISTER = _adt("A08", "R1", "20221201080000", "")[:3]


def test_a_discharge_kept_under_a_merged_patient_ends_the_survivors_visit(store, tmp_path):
    """Admitted as 901, merged into 900, discharged (A03 under 901, as a lagging system
    sends it): delivered in order and with the A03 first, the stay ends the same."""
    in_order = (_as("901", JAN_IN), MERGE, _as("901", JAN_OUT))
    discharge_first = (_as("901", JAN_OUT), _as("901", JAN_IN), MERGE)
    ends = []
    for system, messages in (("a", in_order), ("b", discharge_first)):
        _one_by_one(store, tmp_path, messages, system)
        ends.append(_visits(store))
    assert ends[1] == ends[0] + ends[0], ends


def test_a_discharge_kept_before_a_merge_ends_the_survivors_later_admission(store, tmp_path):
    """Both patients registered, A03 under 901 kept, A40 901 into 900, A01 under 900: ends
    as A40, A01, A03 does (an A40 of patients not yet in the source is quarantined)."""
    known = (REGISTER, _as("901", REGISTER))
    in_order = (*known, MERGE, JAN_IN, _as("901", JAN_OUT))
    discharge_first = (*known, _as("901", JAN_OUT), MERGE, JAN_IN)
    ends = []
    for system, messages in (("a", in_order), ("b", discharge_first)):
        _one_by_one(store, tmp_path, messages, system)
        ends.append(_visits(store))
    assert ends[1] == ends[0] + ends[0], ends
    assert ends[0] == [BOTH_ENDED[0]], ends  # an A03 under a retired MRN is its survivor's


def test_a_kept_discharge_cancelled_by_a13_does_not_end_the_later_admission(store, tmp_path):
    cancel = _adt("A13", "C5", "20230105130000", _pv1("20230101075500"))
    _one_by_one(store, tmp_path, (JAN_OUT, cancel, JAN_IN))
    assert _visits(store) == [("2023-01-01 07:55:00", "None")]


def test_a_discharge_cancelled_by_a13_in_the_same_folder_ends_nothing(store, tmp_path):
    """A03 (no PV1-19), A13 cancelling it, A01: one folder run leaves the stay open; an A13
    sent before the A03 (older MSH-7) cancels nothing."""
    cancel = _adt("A13", "C5", "20230105130000", _pv1("20230101075500"))
    report = ingest_path(store, "hl7v2", _folder(tmp_path, JAN_OUT, cancel, JAN_IN))
    assert_accounted(store, report)
    assert report.skipped_rules["hl7.visit.discharge_cancelled"] == 2, report.as_dict()
    assert _visits(store) == [("2023-01-01 07:55:00", "None")]
    again = ingest_path(store, "hl7v2", _send(tmp_path / "a", "m.hl7", *JAN_OUT))
    assert_accounted(store, again)  # the cancelled A03 read again alone: still cancelled
    assert _visits(store) == [("2023-01-01 07:55:00", "None")], again.as_dict()
    early = _adt("A13", "C6", "20230104130000", _pv1("20230101075500"))
    folder = _folder(tmp_path / "e", early, JAN_OUT, JAN_IN)
    report = ingest_path(store, "hl7v2", folder, source_system="e")
    assert_accounted(store, report)
    assert _visits(store) == [BOTH_ENDED[0], ("2023-01-01 07:55:00", "None")], report.as_dict()


def test_an_a13_naming_its_visit_opens_it_again(store, tmp_path):
    ended = "PV1|1|I|W1||||||||||||||||V1^^^HOSP^VN" + "|" * 25 + "20230101075500|20230105113000"
    discharge = _adt("A03", "C2", "20230105120000", ended)
    cancel = _adt("A13", "C5", "20230105130000", NUMBERED)
    _one_by_one(store, tmp_path, (ADMIT_V1, discharge, cancel))
    assert _visits(store) == [("2023-01-01 07:55:00", "None")]


def test_two_admissions_then_their_discharges_in_one_folder_end_each_its_own_stay(store, tmp_path):
    """Two admissions then two A03s without PV1-19 (one folder): each A03 ends the stay
    its PV1-44 names; an A03 whose PV1-44 names neither stay is kept, and counted."""
    stray = _adt("A03", "C8", "20230305120000", _pv1("20230301075500", "20230305113000"))
    folder = _folder(tmp_path, JAN_IN, FEB_IN, JAN_OUT, FEB_OUT, stray)
    report = ingest_path(store, "hl7v2", folder)
    assert report.skipped_rules["hl7.visit.discharge_unmatched"] == 1, report.as_dict()
    assert_accounted(store, report)
    assert _visits(store) == BOTH_ENDED, report.as_dict()


def test_two_stays_delivered_in_order_as_one_folder_end_both(store, tmp_path):
    """A01, A03, A01, A03 of one patient without visit numbers, in a folder in that order:
    each discharge ends the stay it follows (as one message per run does)."""
    report = ingest_path(store, "hl7v2", _folder(tmp_path, JAN_IN, JAN_OUT, FEB_IN, FEB_OUT))
    assert_accounted(store, report)
    assert _visits(store) == BOTH_ENDED, report.as_dict()


def test_each_discharge_swapped_before_its_own_admission_ends_its_own_stay(store, tmp_path):
    """A03(Jan), A01(Jan), A03(Feb), A01(Feb) in one folder: the January stay is kept."""
    report = ingest_path(store, "hl7v2", _folder(tmp_path, JAN_OUT, JAN_IN, FEB_OUT, FEB_IN))
    assert_accounted(store, report)
    assert _visits(store) == BOTH_ENDED, report.as_dict()


NUMBERED = "PV1|1|I|W1||||||||||||||||V1^^^HOSP^VN" + "|" * 25 + "20230101075500"
ADMIT_V1 = _adt("A01", "C1", "20230101080000", NUMBERED)
CANCEL_V1 = _adt("A11", "C7", "20230101090000", NUMBERED)


def test_a_re_run_does_not_bring_back_a_cancelled_admission_through_a_kept_discharge(
    store, tmp_path
):
    """A01 (visit V1), A11 cancelling it, then a late A03 without PV1-19: the stay was
    cancelled; re-running the folder must not store it again."""
    folder = _folder(tmp_path, ADMIT_V1, CANCEL_V1, JAN_OUT)
    for path in sorted(folder.iterdir()):
        assert_accounted(store, ingest_path(store, "hl7v2", path))
    assert _visits(store) == []
    again = ingest_path(store, "hl7v2", folder)
    assert_accounted(store, again)
    assert _visits(store) == [] and again.loaded == 0, again.as_dict()


def test_an_a11_after_a_kept_discharge_ended_its_admission_cancels_the_stay(store, tmp_path):
    """A03 without PV1-19 (kept), A01 V1 (the A03 ends it), A11 V1: the admission is
    cancelled whatever order the A03 came in."""
    for path in sorted(_folder(tmp_path, JAN_OUT, ADMIT_V1, CANCEL_V1).iterdir()):
        assert_accounted(store, ingest_path(store, "hl7v2", path))
    assert _visits(store) == []


@pytest.mark.parametrize(
    "order", [(JAN_OUT, ADMIT_V1, CANCEL_V1), (ADMIT_V1, JAN_OUT, CANCEL_V1)], ids=["kept", "after"]
)
def test_an_a11_sent_before_the_discharge_that_ended_its_stay_withdraws_it(store, tmp_path, order):
    """A11 V1 sent (MSH-7) before an A03 without PV1-19 that ended V1, delivered last: it
    compares with the admission's MSH-7, withdraws the stay (counted), and a re-run of the
    messages in one folder brings nothing back."""
    runs = []
    for i, message in enumerate(order):
        runs.append(ingest_path(store, "hl7v2", _send(tmp_path / str(i), "m.hl7", *message)))
        assert_accounted(store, runs[-1])
    assert _visits(store) == [] and runs[-1].withdrawn == 1, runs[-1].as_dict()
    again = ingest_path(store, "hl7v2", _folder(tmp_path / "all", *order))
    assert_accounted(store, again)
    assert _visits(store) == [] and again.loaded == 0, again.as_dict()


@pytest.mark.parametrize(
    "order", [(JAN_OUT, ADMIT_V1, CANCEL_V1), (ADMIT_V1, JAN_OUT, CANCEL_V1)], ids=["kept", "after"]
)
def test_an_a11_after_a_discharge_in_one_folder_cancels_the_stay(store, tmp_path, order):
    """The same three messages read as one folder: no visit is stored, on a re-run either."""
    folder = _folder(tmp_path, *order)
    for _ in range(2):
        report = ingest_path(store, "hl7v2", folder)
        assert_accounted(store, report)
        assert _visits(store) == [], report.as_dict()


def test_a_prune_re_export_still_holding_the_kept_discharge_keeps_it(store, tmp_path):
    first = _send(tmp_path / "a", "0.hl7", *JAN_OUT)
    assert_accounted(store, ingest_path(store, "hl7v2", first, source_system="pas"))
    again = ingest_path(store, "hl7v2", first, prune=True, source_system="pas")
    assert_accounted(store, again)
    assert again.pruned == 0, again.as_dict()
    later = _send(tmp_path / "b", "0.hl7", *JAN_IN)
    assert_accounted(store, ingest_path(store, "hl7v2", later, source_system="pas"))
    assert _visits(store) == [BOTH_ENDED[0]]


#: An A13 without PV1-19 cancelling the January discharge (PV1-44 its admission), sent after it.
CANCEL_JAN = _adt("A13", "C5", "20230105130000", _pv1("20230101075500"))
#: An A13 without PV1-19 nor PV1-44, sent after the February discharge.
CANCEL_LAST = _adt("A13", "C6", "20230205130000", "PV1|1|I|W1")
JAN_OPEN = ("2023-01-01 07:55:00", "None")
FEB_OPEN = ("2023-02-01 07:55:00", "None")


@pytest.mark.parametrize("one_folder", [False, True], ids=["one_by_one", "one_folder"])
def test_an_a13_without_visit_number_opens_the_stay_its_admission_names(
    store, tmp_path, one_folder
):
    """A01, A03 (ending it), A13 giving the admission's PV1-44: the stay is open again;
    a re-run changes nothing."""
    messages = (JAN_IN, JAN_OUT, CANCEL_JAN)
    if one_folder:
        assert_accounted(store, ingest_path(store, "hl7v2", _folder(tmp_path, *messages)))
    else:
        _one_by_one(store, tmp_path, messages)
    assert _visits(store) == [JAN_OPEN]
    again = ingest_path(store, "hl7v2", _folder(tmp_path / "again", *messages))
    assert_accounted(store, again)
    assert _visits(store) == [JAN_OPEN] and again.loaded == 0, again.as_dict()


def test_an_a13_without_admission_time_opens_the_latest_ended_stay(store, tmp_path):
    _one_by_one(store, tmp_path, (JAN_IN, JAN_OUT, FEB_IN, FEB_OUT, CANCEL_LAST))
    assert _visits(store) == [BOTH_ENDED[0], FEB_OPEN]


def test_an_a13_naming_no_ended_stay_or_sent_before_the_discharge_opens_nothing(store, tmp_path):
    """An A13 whose PV1-44 is no stay's start, and one sent (MSH-7) before the A03 that
    ended the stay, open nothing: each is skipped by its rule."""
    stray = _adt("A13", "C7", "20230105130000", _pv1("20221201075500"))
    early = _adt("A13", "C8", "20230105110000", _pv1("20230101075500"))
    _one_by_one(store, tmp_path, (JAN_IN, JAN_OUT))
    for name, message in (("s", stray), ("e", early)):
        report = ingest_path(store, "hl7v2", _send(tmp_path / name, "m.hl7", *message))
        assert_accounted(store, report)
        assert report.skipped_rules["hl7.visit.discharge_cancelled"] == 1, report.as_dict()
        assert _visits(store) == [BOTH_ENDED[0]]


def test_an_a13_read_before_its_discharge_in_an_earlier_run_cancels_it(store, tmp_path):
    """A01, A13 (sent after the A03, delivered first), A03, each a run: the kept A13 drops
    the A03 when read; a later stay's discharge, sent after the A13, ends its stay."""
    _one_by_one(store, tmp_path, (JAN_IN, CANCEL_JAN, JAN_OUT))
    assert _visits(store) == [JAN_OPEN]
    for i, message in enumerate((FEB_IN, FEB_OUT)):
        feed = _send(tmp_path / f"feb{i}", "m.hl7", *message)
        assert_accounted(store, ingest_path(store, "hl7v2", feed))
    assert _visits(store) == [JAN_OPEN, BOTH_ENDED[1]]


#: An A03 without PV1-19 nor PV1-44, discharged on 10 February: it fits both stays.
LATE_OUT = _adt("A03", "C9", "20230210120000", "PV1|1|I|W1" + "|" * 42 + "20230210113000")
FEB_ENDED = [JAN_OPEN, ("2023-02-01 07:55:00", "2023-02-10 11:30:00")]


@pytest.mark.parametrize(
    "runs",
    [
        [[LATE_OUT], [JAN_IN, FEB_IN]],
        [[JAN_IN, FEB_IN, LATE_OUT]],
        [[LATE_OUT, JAN_IN, FEB_IN]],
        [[JAN_IN], [FEB_IN], [LATE_OUT]],
        [[JAN_IN], [LATE_OUT, FEB_IN]],
    ],
    ids=["kept_then_both", "in_order", "first_in_folder", "each_in_order", "one_then_both"],
)
def test_a_discharge_fitting_two_stays_ends_the_one_that_began_last(store, tmp_path, runs):
    """An A03 without admission time whose discharge follows two admissions ends the later
    stay, when both admissions are read before it or in the run that reads it."""
    for i, messages in enumerate(runs):
        report = ingest_path(store, "hl7v2", _folder(tmp_path / str(i), *messages))
        assert_accounted(store, report)
    assert _visits(store) == FEB_ENDED, report.as_dict()


def test_a_kept_discharge_moves_to_a_later_stay_read_in_a_later_run(store, tmp_path):
    """A03 without PV1-44 kept, then January's A01 (it ends January's stay), then
    February's A01 in a later run: February's stay, begun later and before the discharge,
    takes it over and January's opens again, as when both admissions come before it."""
    for i, message in enumerate((LATE_OUT, JAN_IN, FEB_IN)):
        assert_accounted(
            store, ingest_path(store, "hl7v2", _send(tmp_path / str(i), "m.hl7", *message))
        )
    assert _visits(store) == FEB_ENDED


def test_a_discharge_that_ended_a_stay_when_read_moves_to_a_later_stay_read_later(store, tmp_path):
    """January's A01, then the A03 without PV1-44 (it ends January's stay), then
    February's A01 (sent before the A03, delivered after it): as in any other order,
    February's stay ends and January's stays open."""
    for i, message in enumerate((JAN_IN, LATE_OUT, FEB_IN)):
        report = ingest_path(store, "hl7v2", _send(tmp_path / str(i), "m.hl7", *message))
        assert_accounted(store, report)
    assert _visits(store) == FEB_ENDED, report.as_dict()


def test_a_re_run_after_a_kept_discharge_moved_changes_nothing(store, tmp_path):
    """After the move above, the three messages read again (each alone, then as one
    folder) load nothing and leave February's stay ended, January's open."""
    for i, message in enumerate((LATE_OUT, JAN_IN, FEB_IN, JAN_IN, FEB_IN, LATE_OUT)):
        report = ingest_path(store, "hl7v2", _send(tmp_path / str(i), "m.hl7", *message))
        assert_accounted(store, report)
    again = ingest_path(store, "hl7v2", _folder(tmp_path / "f", LATE_OUT, JAN_IN, FEB_IN))
    assert_accounted(store, again)
    assert again.loaded == 0, again.as_dict()
    assert _visits(store) == FEB_ENDED, again.as_dict()


def test_a_prune_re_export_without_a_kept_a13_drops_it(store, tmp_path):
    """An A13 kept (it opened nothing) that a full re-export no longer holds is dropped:
    the A03 read later ends the stay; kept, it would have been cancelled."""
    first = _folder(tmp_path / "a", JAN_IN, CANCEL_JAN)
    assert_accounted(store, ingest_path(store, "hl7v2", first, source_system="pas"))
    export = _send(tmp_path / "b", "0.hl7", *JAN_IN)
    report = ingest_path(store, "hl7v2", export, prune=True, source_system="pas")
    assert_accounted(store, report)
    assert report.warnings["prune.kept_discharge_dropped"] == 1, report.as_dict()
    later = _send(tmp_path / "c", "0.hl7", *JAN_OUT)
    assert_accounted(store, ingest_path(store, "hl7v2", later, source_system="pas"))
    assert _visits(store) == [BOTH_ENDED[0]]
