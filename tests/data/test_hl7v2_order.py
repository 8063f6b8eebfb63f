"""HL7 v2 messages delivered out of order, one run each or re-run as a folder: the store
ends the same, and each run's counters say what that run did."""

from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from typer.testing import CliRunner

from flip.cli.app import app
from flip.data.cdm import schema
from flip.data.ingest import Ingestor, ingest_path
from flip.data.sources.mllp import MllpListener
from flip.data.terminology import Vocabulary
from tests.data.accounting import assert_accounted
from tests.data.stored import rows
from tests.data.test_hl7v2_fidelity import _adt, _oru, _send

ADMIT = "PV1|1|I|W1" + "|" * 41 + "20230101075500"
DISCHARGE = ADMIT + "|20230105113000"


def _each(store, folder: Path) -> None:
    """Ingest every file of `folder` as a run of its own, in name order."""
    for path in sorted(folder.iterdir()):
        assert_accounted(store, ingest_path(store, "hl7v2", path))


def _visits(store) -> list[tuple]:
    return sorted(
        (v["visit_start_datetime"], v["visit_end_datetime"])
        for v in rows(store, "visit_occurrence")
    )


def _discharge_first(folder: Path) -> Path:
    """An A03 without PV1-19 that sorts (and is delivered) before its patient's A01."""
    _send(folder, "1.hl7", *_adt("A03", "C2", "20230105120000", DISCHARGE))
    return _send(folder, "2.hl7", *_adt("A01", "C1", "20230101080000", ADMIT))


def test_a_discharge_delivered_before_its_admission_ends_the_visit_in_any_order(store, tmp_path):
    folder = _discharge_first(tmp_path / "m")
    first = ingest_path(store, "hl7v2", folder / "1.hl7")
    assert_accounted(store, first)
    assert first.skipped_rules["hl7.visit.discharge_unmatched"] == 1, first.as_dict()
    assert_accounted(store, ingest_path(store, "hl7v2", folder / "2.hl7"))
    ended = [(datetime(2023, 1, 1, 7, 55), datetime(2023, 1, 5, 11, 30))]
    assert _visits(store) == ended
    again = ingest_path(store, "hl7v2", folder)
    assert_accounted(store, again)
    assert again.loaded == 0 and again.quarantined == 0, again.as_dict()
    assert "hl7.visit.discharge_unmatched" not in again.skipped_rules, again.as_dict()
    assert _visits(store) == ended
    later = _send(tmp_path / "n", "3.hl7", *_adt("A01", "C9", "20230201080000", "PV1|1|I|W2"))
    assert_accounted(store, ingest_path(store, "hl7v2", later))
    assert [end for _, end in _visits(store)] == [ended[0][1], None]  # applied once only


def test_a_folder_whose_discharge_sorts_first_ends_the_visit_in_one_run(store, tmp_path):
    folder = _discharge_first(tmp_path / "m")
    report = ingest_path(store, "hl7v2", folder)
    assert_accounted(store, report)
    assert "hl7.visit.discharge_unmatched" not in report.skipped_rules, report.as_dict()
    assert _visits(store) == [(datetime(2023, 1, 1, 7, 55), datetime(2023, 1, 5, 11, 30))]
    again = ingest_path(store, "hl7v2", folder)
    assert_accounted(store, again)
    assert again.loaded == 0 and "hl7.visit.discharge_unmatched" not in again.skipped_rules


def _quarantined(store) -> list[str]:
    with store.connect() as conn:
        return list(conn.execute(select(schema.quarantine.c.rule)).scalars())


def test_a_corrected_message_keeps_its_bad_older_version_out_of_quarantine(store, tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "1.hl7").write_text(_oru("20230101090000", "R1", "high", "F"))
    (folder / "2.hl7").write_text(_oru("20230101100000", "R2", "6.6", "C"))
    first = ingest_path(store, "hl7v2", folder / "1.hl7")
    assert first.rules == {"hl7.obx.value_not_numeric": 1}, first.as_dict()
    assert_accounted(store, ingest_path(store, "hl7v2", folder / "2.hl7"))
    assert _quarantined(store) == []
    again = ingest_path(store, "hl7v2", folder)
    assert_accounted(store, again)
    assert again.quarantined == 0 and _quarantined(store) == [], again.as_dict()
    assert [r["value_source_value"] for r in rows(store, "measurement")] == ["6.6"]


def test_a_bad_older_version_read_with_its_correction_in_one_run_is_superseded(store, tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "1.hl7").write_text(_oru("20230101100000", "R2", "6.6", "C"))
    (folder / "2.hl7").write_text(_oru("20230101090000", "R1", "high", "F"))
    report = ingest_path(store, "hl7v2", folder)
    assert_accounted(store, report)
    assert report.quarantined == 0 and _quarantined(store) == [], report.as_dict()
    assert report.skipped_rules["identity.superseded_in_run"] == 2, report.as_dict()  # PID, OBX


def test_an_older_version_than_an_earlier_run_stored_is_not_superseded_in_this_run(store, tmp_path):
    old, new = _oru("20230101090000", "R1", "5.5", "F"), _oru("20230101100000", "R2", "6.6", "C")
    for i, text in enumerate((new, old)):
        (tmp_path / f"{i}.hl7").write_text(text)
        report = ingest_path(store, "hl7v2", tmp_path / f"{i}.hl7")
        assert_accounted(store, report)
    assert "identity.superseded_in_run" not in report.skipped_rules, report.as_dict()
    assert report.skipped_rules["identity.older_than_stored"] == 2, report.as_dict()  # PID, OBX
    assert [r["value_source_value"] for r in rows(store, "measurement")] == ["6.6"]


def test_a_correction_received_later_in_the_same_listener_run_releases_its_quarantine(store):
    ingestor = Ingestor(store, Vocabulary.from_store(store), "hl7v2")
    ingestor.start("hl7v2", "mllp://test")
    listener = MllpListener(ingestor)
    bad = listener.handle(_oru("20230101090000", "R1", "high", "F").encode(), "peer")
    assert "MSA|AE|R1|hl7.obx.value_not_numeric" in bad
    assert "MSA|AA|R2" in listener.handle(_oru("20230101100000", "R2", "6.6", "C").encode(), "peer")
    report = listener.finish()
    assert_accounted(store, report)
    assert report.quarantined == 0 and _quarantined(store) == [], report.as_dict()
    assert report.skipped_rules["identity.superseded_in_run"] == 2, report.as_dict()  # PID, OBX


def _withdrawn_column(store, run_id: int) -> int:
    run = schema.ingest_run
    with store.connect() as conn:
        found = select(run.c.records_withdrawn).where(run.c.ingest_run_id == run_id)
        return conn.execute(found).scalar_one()


def test_a_cancelled_visit_counts_as_withdrawn_in_the_listener_run_and_its_row(store, tmp_path):
    pv1 = "PV1|1|I|4W||||||||||||||||5000123^^^HOSP^FIN"
    admit = _send(tmp_path / "a", "a.hl7", *_adt("A01", "K1", "20230101080000", pv1))
    assert_accounted(store, ingest_path(store, "hl7v2", admit))
    ingestor = Ingestor(store, Vocabulary.from_store(store), "hl7v2")
    ingestor.start("hl7v2", "mllp://test")
    listener = MllpListener(ingestor)
    cancel = "\r".join(_adt("A11", "K2", "20230101090000", pv1))
    assert "MSA|AA|K2" in listener.handle(cancel.encode(), "peer")
    report = listener.finish()
    assert_accounted(store, report)
    assert report.as_dict()["withdrawn"] == 1 and _withdrawn_column(store, report.run_id) == 1
    assert rows(store, "visit_occurrence") == []


def test_the_ingest_summary_shows_what_a_run_withdrew(tmp_path):
    pv1 = "PV1|1|I|4W||||||||||||||||5000123^^^HOSP^FIN"
    store = str(tmp_path / "site.duckdb")
    runner = CliRunner()
    for i, (event, sent) in enumerate((("A01", "20230101080000"), ("A11", "20230101090000"))):
        feed = _send(tmp_path / str(i), "m.hl7", *_adt(event, f"K{i}", sent, pv1))
        result = runner.invoke(app, ["site", "ingest", "hl7v2", str(feed), "--store", store])
        assert result.exit_code == 0, result.output
    header = next(line for line in result.output.splitlines() if "read" in line)
    assert "withdrawn" in header, result.output


def test_a_discharge_received_before_its_admission_ends_it_in_the_listener_and_files_its_dg1(
    store,
):
    ingestor = Ingestor(store, Vocabulary.from_store(store), "hl7v2")
    ingestor.start("hl7v2", "mllp://test")
    listener = MllpListener(ingestor)
    discharge = (*_adt("A03", "C2", "20230105120000", DISCHARGE), "DG1|1||I21.9^AMI^I10||20230102")
    assert "MSA|AA|C2" in listener.handle("\r".join(discharge).encode(), "peer")
    assert rows(store, "visit_occurrence") == []
    admit = _adt("A01", "C1", "20230101080000", ADMIT)
    assert "MSA|AA|C1" in listener.handle("\r".join(admit).encode(), "peer")
    assert _visits(store) == [(datetime(2023, 1, 1, 7, 55), datetime(2023, 1, 5, 11, 30))]
    (visit,) = rows(store, "visit_occurrence")
    (diagnosis,) = rows(store, "condition_occurrence")
    assert diagnosis["visit_occurrence_id"] == visit["visit_occurrence_id"]
    report = listener.finish()
    assert_accounted(store, report)
    assert report.skipped_rules["hl7.visit.discharge_unmatched"] == 1, report.as_dict()


def test_a_re_run_does_not_move_a_discharge_to_a_later_visit(store, tmp_path):
    folder = _send(tmp_path / "m", "1.hl7", *_adt("A01", "C1", "20230101080000", ADMIT))
    _send(folder, "2.hl7", *_adt("A03", "C2", "20230105120000", DISCHARGE))
    _send(folder, "3.hl7", *_adt("A01", "C3", "20230201080000", "PV1|1|I|W2"))
    _each(store, folder)
    before = _visits(store)
    assert [end for _, end in before] == [datetime(2023, 1, 5, 11, 30), None]
    for _ in range(2):
        again = ingest_path(store, "hl7v2", folder)
        assert_accounted(store, again)
        assert again.loaded == 0, again.as_dict()
        assert _visits(store) == before


def test_a_discharge_naming_its_visit_gives_the_same_visit_in_either_order(store, tmp_path):
    numbered = "PV1|1|I|W1||||||||||||||||V7^^^HOSP^VN" + "|" * 25 + "20230101075500"
    admit = _adt("A01", "C1", "20230101080000", numbered)
    discharge = _adt("A03", "C2", "20230105120000", numbered + "|20230105113000")
    for system, messages in (("in-order", (admit, discharge)), ("reversed", (discharge, admit))):
        for i, message in enumerate(messages):
            feed = _send(tmp_path / f"{system}{i}", "m.hl7", *message)
            assert_accounted(store, ingest_path(store, "hl7v2", feed, source_system=system))
    ended = (datetime(2023, 1, 1, 7, 55), datetime(2023, 1, 5, 11, 30))
    assert _visits(store) == [ended, ended]
