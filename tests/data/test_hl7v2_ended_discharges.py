"""HL7 A03s giving no admission time that ended a stay are kept (pending_discharge, kind
ended) while a later admission may take them over; once the stay they ended is cancelled or
opened again by another message, they end nothing and are no longer kept."""

import hashlib
from pathlib import Path

import pytest

from flip.data.ingest import ingest_path
from tests.data.accounting import assert_accounted
from tests.data.stored import rows
from tests.data.test_hl7v2_discharge_matching import (
    ADMIT_V1,
    CANCEL_V1,
    FEB_ENDED,
    FEB_IN,
    JAN_IN,
    LATE_OUT,
    _folder,
    _visits,
)
from tests.data.test_hl7v2_fidelity import _adt, _send

#: An A13 without PV1-19 nor PV1-44, sent after LATE_OUT: it opens the stay LATE_OUT ended.
REOPEN = _adt("A13", "C10", "20230211090000", "PV1|1|I|W1")
#: LATE_OUT's record key as kept.
KEY = "visit/C9"


def _kept(store) -> dict[str, str]:
    return {r["record_key"]: r["kind"] for r in rows(store, "pending_discharge")}


def _stale(store) -> set[str]:
    """The kept discharges of kind ended whose content is no stored visit's: they end none."""
    visits = {
        r["content_hash"]
        for r in rows(store, "source_record")
        if r["cdm_table"] == "visit_occurrence" and r["role"] == "produced"
    }
    kept = rows(store, "pending_discharge")
    return {
        r["record_key"]
        for r in kept
        if r["kind"] == "ended" and hashlib.sha256(r["raw"]).hexdigest() not in visits
    }


def _run(store, tmp_path: Path, *messages: tuple[str, ...]) -> None:
    for i, message in enumerate(messages):
        feed = _send(tmp_path / f"{len(list(tmp_path.iterdir()))}-{i}", "m.hl7", *message)
        assert_accounted(store, ingest_path(store, "hl7v2", feed))


@pytest.mark.parametrize(
    "ending",
    [(ADMIT_V1, LATE_OUT, CANCEL_V1), (JAN_IN, LATE_OUT, REOPEN)],
    ids=["stay_cancelled", "stay_opened_again"],
)
def test_a_kept_discharge_whose_stay_another_message_undid_is_dropped(store, tmp_path, ending):
    _run(store, tmp_path, *ending)
    assert _visits(store) in ([], [("2023-01-01 07:55:00", "None")])
    assert _stale(store) == {KEY}
    _run(store, tmp_path, FEB_IN)  # the patient's next admission: their kept records are read
    assert KEY not in _kept(store), _kept(store)
    again = ingest_path(store, "hl7v2", _folder(tmp_path / "all", *ending, FEB_IN))
    assert_accounted(store, again)
    _run(store, tmp_path, FEB_IN)
    assert _stale(store) == set(), _kept(store)


def test_a_kept_discharge_that_moved_to_a_later_stay_stays_kept(store, tmp_path):
    """Moved to February's stay, it still ends a stay: an admission read later, begun after
    February's and before the discharge, may take it over again."""
    _run(store, tmp_path, JAN_IN, LATE_OUT, FEB_IN)
    assert _visits(store) == FEB_ENDED
    assert _kept(store) == {KEY: "ended"} and _stale(store) == set()
    mid_feb = _adt("A01", "C11", "20230205080000", "PV1|1|I|W1" + "|" * 41 + "20230205075500")
    _run(store, tmp_path, mid_feb)
    assert _visits(store) == [
        FEB_ENDED[0],
        ("2023-02-01 07:55:00", "None"),
        ("2023-02-05 07:55:00", "2023-02-10 11:30:00"),
    ]
    assert _kept(store) == {KEY: "ended"}
