"""An HL7 A11 (cancel admit) naming its visit
(PV1-19) delivered before the A01 it cancels; an A03 without PV1-19/44 sent twice."""

import pytest

from flip.data.ingest import ingest_path
from tests.data.accounting import assert_accounted
from tests.data.stored import rows
from tests.data.test_hl7v2_discharge_matching import (
    ADMIT_V1,
    CANCEL_V1,
    FEB_IN,
    REGISTER,
    _folder,
    _visits,
)
from tests.data.test_hl7v2_fidelity import _adt, _send


def test_an_a11_read_before_its_older_a01_leaves_no_stay(store, tmp_path):
    """A11 V1 (sent 09:00) delivered before A01 V1 (sent 08:00): the admission was
    cancelled; reading it late must not store the stay (skipped as older than the stored
    withdrawal)."""
    for i, message in enumerate((REGISTER, CANCEL_V1, ADMIT_V1)):
        report = ingest_path(store, "hl7v2", _send(tmp_path / str(i), "m.hl7", *message))
        assert_accounted(store, report)
    # its patient record and visit are both older than the A11's
    assert report.skipped_rules["identity.older_than_stored"] == 2, report.as_dict()
    assert _visits(store) == []


def test_an_a11_before_its_older_a01_in_one_folder_leaves_no_stay(store, tmp_path):
    """The same two messages in one folder, the A11's file sorting first."""
    report = ingest_path(store, "hl7v2", _folder(tmp_path, REGISTER, CANCEL_V1, ADMIT_V1))
    assert_accounted(store, report)
    assert _visits(store) == [], report.as_dict()


@pytest.mark.parametrize("order", ["a11_first", "a01_first"])
def test_the_diagnoses_of_a_cancelled_admission_stay_in_no_visit(store, tmp_path, order):
    """An A01 with a DG1 and the A11 cancelling it, one folder either way round, then the
    A01 again alone: the diagnosis loads, naming no visit (none is stored)."""
    admit = (*ADMIT_V1, "DG1|1||I10^Hypertension^I10||20230101")
    messages = (CANCEL_V1, admit) if order == "a11_first" else (admit, CANCEL_V1)
    report = ingest_path(store, "hl7v2", _folder(tmp_path, REGISTER, *messages))
    assert_accounted(store, report)
    again = ingest_path(store, "hl7v2", _send(tmp_path / "again", "m.hl7", *admit))
    assert_accounted(store, again)
    assert _visits(store) == [], (report.as_dict(), again.as_dict())
    diagnoses = rows(store, "condition_occurrence")
    assert [d["visit_occurrence_id"] for d in diagnoses] == [None], diagnoses


#: An A03 without PV1-19 nor PV1-44, sent 10 February 12:00, discharged 11:30.
LATE_OUT = _adt("A03", "C9", "20230210120000", "PV1|1|I|W1" + "|" * 42 + "20230210113000")


def test_an_a03_without_admission_time_sent_twice_in_one_folder_keeps_the_stays_start(
    store, tmp_path
):
    """A01 (1 Feb) and an A03 without PV1-19/44 written twice to the drop folder (same
    MSH-10, a sender's retransmission): the stay keeps its admission time; the second copy
    must not set the start to the A03's MSH-7 (after the discharge)."""
    report = ingest_path(store, "hl7v2", _folder(tmp_path, FEB_IN, LATE_OUT, LATE_OUT))
    assert_accounted(store, report)
    assert _visits(store) == [("2023-02-01 07:55:00", "2023-02-10 11:30:00")], report.as_dict()
