"""--prune: a full re-export removes what the source system no longer holds, and only that."""

import json

import pytest
import yaml
from sqlalchemy import select
from typer.testing import CliRunner

from flip.cli.app import app
from flip.data.cdm import schema
from flip.data.ingest import ingest_fhir_server, ingest_path
from flip.data.ingest.prune import PERSON_KEPT, PRUNE_REFUSED
from tests.data.accounting import assert_accounted
from tests.data.stored import rows, write_ndjson

NHS = "https://fhir.nhs.uk/Id/nhs-number"


def patient(id_, nhs=None, born="1950-10-24"):
    found = {"resourceType": "Patient", "id": id_, "gender": "female", "birthDate": born}
    if nhs:
        found["identifier"] = [{"system": NHS, "value": nhs}]
    return found


def condition(id_, subject, onset="2020-01-02", code="44054006"):
    return {
        "resourceType": "Condition",
        "id": id_,
        "subject": {"reference": subject},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": code}]},
        "onsetDateTime": onset,
    }


def _export(tmp_path, resources):
    folder = tmp_path / "export"
    folder.mkdir(exist_ok=True)
    for old in folder.iterdir():
        old.unlink()
    write_ndjson(folder / "all.ndjson", resources)
    return folder


def _periods(store):
    return {
        p["person_id"]: p["observation_period_end_date"].isoformat()
        for p in rows(store, "observation_period")
    }


def test_a_full_re_export_removes_what_the_source_no_longer_holds(store, tmp_path):
    first = [
        patient("a"),
        patient("b"),
        condition("a1", "Patient/a"),
        condition("a2", "Patient/a", onset="2021-06-01", code="38341003"),
        condition("b1", "Patient/b"),
    ]
    folder = _export(tmp_path, first)
    assert_accounted(store, ingest_path(store, "fhir", folder))
    later = [patient("a"), condition("a1", "Patient/a")]
    _export(tmp_path, later)
    kept = ingest_path(store, "fhir", folder)  # default: nothing is pruned
    assert_accounted(store, kept)
    assert kept.pruned == 0 and len(rows(store, "condition_occurrence")) == 3
    report = ingest_path(store, "fhir", folder, prune=True)
    assert_accounted(store, report)
    assert (report.unchanged, report.pruned) == (2, 3)  # a2, b1 and Patient b
    assert report.pruned_rows == {"condition_occurrence": 2, "person": 1}
    [person] = rows(store, "person")
    [left] = rows(store, "condition_occurrence")
    assert left["person_id"] == person["person_id"]
    assert _periods(store) == {person["person_id"]: "2020-01-02"}  # a2's date no longer counts
    with store.connect() as conn:
        keys = set(conn.execute(select(schema.source_record.c.record_key)).scalars())
        run = conn.execute(
            select(schema.ingest_run.c.records_pruned).where(
                schema.ingest_run.c.ingest_run_id == report.run_id
            )
        ).scalar_one()
    assert keys == {"Patient/a", "Condition/a1"} and run == 3
    again = ingest_path(store, "fhir", folder, prune=True)
    assert again.pruned == 0 and again.unchanged == 2
    assert_accounted(store, again)


def test_a_record_whose_key_held_a_nul_is_not_pruned_by_the_run_that_loaded_it(store, tmp_path):
    """The store keeps the key without its NUL; the run remembered it with the NUL, so --prune
    removed the record it had just loaded."""
    folder = _export(tmp_path, [patient("a"), condition("c\u00001", "Patient/a")])
    report = ingest_path(store, "fhir", folder, prune=True)
    assert_accounted(store, report)
    assert (report.loaded, report.pruned) == (2, 0)
    assert len(rows(store, "condition_occurrence")) == 1
    again = ingest_path(store, "fhir", folder, prune=True)
    assert_accounted(store, again)
    assert (again.unchanged, again.pruned) == (2, 0)


def test_a_record_still_sent_but_now_quarantined_or_skipped_is_not_pruned(store, tmp_path):
    folder = _export(
        tmp_path, [patient("a"), condition("a1", "Patient/a"), condition("a2", "Patient/a")]
    )
    ingest_path(store, "fhir", folder)
    refuted = condition("a2", "Patient/a") | {
        "verificationStatus": {"coding": [{"code": "refuted"}]}
    }
    _export(tmp_path, [patient("a"), condition("a1", "Patient/a", onset="1900-01-01"), refuted])
    report = ingest_path(store, "fhir", folder, prune=True)
    assert_accounted(store, report)
    assert report.quarantined == 1 and report.skipped == 1 and report.pruned == 0
    assert report.withdrawn == 1, "the refuted one is withdrawn (test_withdrawn), not pruned"
    [kept] = rows(store, "condition_occurrence")
    assert kept["condition_start_date"].year != 1900, "the quarantined one keeps its rows"


def test_a_person_other_sources_still_refer_to_is_kept(store, tmp_path):
    gp = tmp_path / "gp.ndjson"
    write_ndjson(gp, [patient("g", nhs="9434765919"), condition("g1", "Patient/g")])
    hospital = tmp_path / "hospital.ndjson"
    write_ndjson(hospital, [patient("h", nhs="9434765919"), condition("h1", "Patient/h")])
    for path in (gp, hospital):
        assert_accounted(store, ingest_path(store, "fhir", path, person_identifier=NHS))
    write_ndjson(gp, [patient("other", nhs="9999999999", born="1960-01-01")])
    report = ingest_path(store, "fhir", gp, person_identifier=NHS, prune=True)
    assert_accounted(store, report)
    assert report.pruned == 1 and report.pruned_rows == {"condition_occurrence": 1}
    assert report.warnings == {PERSON_KEPT: 1}
    assert len(rows(store, "person")) == 2
    [left] = rows(store, "condition_occurrence")
    assert left["condition_source_value"] == "44054006"
    assert {p["person_id"] for p in rows(store, "person")} >= {left["person_id"]}


def test_an_empty_re_export_prunes_nothing(store, tmp_path):
    folder = _export(tmp_path, [patient("a"), condition("a1", "Patient/a")])
    ingest_path(store, "fhir", folder)
    (folder / "all.ndjson").write_bytes(b"")
    report = ingest_path(store, "fhir", folder, prune=True)
    assert report.read == 0 and report.pruned == 0
    assert len(rows(store, "condition_occurrence")) == 1


def test_a_csv_re_export_through_its_mapping_is_pruned(store, tmp_path):
    folder = tmp_path / "extract"
    folder.mkdir()
    (folder / "patients.csv").write_text("id,dob\nP1,1950-01-01\n")
    labs = (
        "lab_id,patient,code,result,taken\n"
        "L1,P1,2345-7,5.1,2020-01-01\nL2,P1,2345-7,6.0,2020-02-01\n"
    )
    (folder / "labs.csv").write_text(labs)
    mapping = {
        "person": {"file": "patients.csv", "id": "id", "birth_date": {"column": "dob"}},
        "events": [
            {
                "file": "labs.csv",
                "id": "lab_id",
                "person": "patient",
                "code": {"column": "code", "system": "http://loinc.org"},
                "date": {"column": "taken"},
                "value": "result",
                "default_table": "measurement",
            }
        ],
    }
    (folder / "mapping.yaml").write_text(yaml.safe_dump(mapping))
    ingest_path(store, "csv", folder)
    (folder / "labs.csv").write_text(labs.rsplit("L2", 1)[0])
    report = ingest_path(store, "csv", folder, prune=True)
    assert_accounted(store, report)
    assert report.pruned_rows == {"measurement": 1}
    [left] = rows(store, "measurement")
    assert left["value_as_number"] == 5.1


def test_partial_sources_are_not_pruned_unless_named(store, tmp_path):
    feed = tmp_path / "feed.hl7"
    feed.write_text("MSH|^~\\&|A|B|C|D|20240101||ADT^A04|1|P|2.5\rPID|1||7^^^H^MR||X||19600101|F\r")
    with pytest.raises(ValueError, match="HL7 v2 feed is partial"):
        ingest_path(store, "hl7v2", feed, prune=True)
    with pytest.raises(ValueError, match="add --full"):
        ingest_fhir_server(store, "http://127.0.0.1:9/fhir", prune=True)
    report = ingest_path(store, "hl7v2", feed, prune=True, source_system="pas-snapshot")
    assert_accounted(store, report)
    assert report.loaded == 1 and report.pruned == 0


def test_cli_prunes_only_when_asked(tmp_path):
    folder = _export(tmp_path, [patient("a"), condition("a1", "Patient/a")])
    store = str(tmp_path / "s.duckdb")
    base = ["site", "ingest", "fhir", str(folder), "--store", store, "--json"]
    runner = CliRunner()
    assert runner.invoke(app, base).exit_code == 0
    _export(tmp_path, [patient("a")])
    result = runner.invoke(app, [*base, "--prune"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["pruned_rows"] == {"condition_occurrence": 1}
    feed = tmp_path / "feed.hl7"
    feed.write_text("MSH|^~\\&|A|B|C|D|20240101||ADT^A04|1|P|2.5\rPID|1||7^^^H^MR||X||19600101|F\r")
    result = runner.invoke(app, ["site", "ingest", "hl7v2", str(feed), "--store", store, "--prune"])
    assert result.exit_code == 1 and "HL7 v2 feed is partial" in result.output


def test_a_record_quarantined_without_its_key_stops_the_prune(store, tmp_path):
    folder = _export(tmp_path, [patient("a"), condition("a1", "Patient/a")])
    ingest_path(store, "fhir", folder)
    (folder / "all.ndjson").write_bytes(
        json.dumps(patient("a")).encode() + b'\n{"resourceType": "Condition", "id": "a1", \n'
    )
    report = ingest_path(store, "fhir", folder, prune=True)
    assert_accounted(store, report)
    assert report.quarantined == 1 and report.pruned == 0
    assert report.warnings == {PRUNE_REFUSED: 1}
    assert len(rows(store, "condition_occurrence")) == 1


def test_a_folder_of_the_same_name_elsewhere_does_not_prune_the_other(store, tmp_path):
    """Two hospitals' `export` folders share the default system `fhir:export`: pruning B's
    export removed every record A's had loaded."""
    a, b = tmp_path / "a" / "export", tmp_path / "b" / "export"
    for folder, name in ((a, "a"), (b, "b")):
        folder.mkdir(parents=True)
        write_ndjson(
            folder / "all.ndjson", [patient(name), condition(f"{name}1", f"Patient/{name}")]
        )
    assert_accounted(store, ingest_path(store, "fhir", a))
    report = ingest_path(store, "fhir", b, prune=True)
    assert_accounted(store, report)
    assert report.pruned == 0
    assert report.warnings["prune.kept.other_location"] == 2
    assert len(rows(store, "person")) == len(rows(store, "condition_occurrence")) == 2
    named = ingest_path(store, "fhir", b, prune=True, source_system="fhir:export")
    assert_accounted(store, named)
    assert named.pruned == 2, "a named system is one source wherever it is read from"


def test_a_folder_that_cannot_be_listed_stops_the_prune(store, tmp_path, monkeypatch):
    """A DICOM folder that could not be listed (an NFS mount gone stale) was only noted as
    not read, and --prune removed every series it held."""
    import os
    import shutil

    from tests.data.test_dicom import _persons_for
    from tests.data.test_dicom_instances import SERIES_TREE

    images = tmp_path / "images"
    for name in ("CT2", "CR1"):
        shutil.copytree(SERIES_TREE / "77654033" / name, images / name)
    _persons_for(store, images)
    assert_accounted(store, ingest_path(store, "dicom", images))
    listed = os.scandir

    def stale(path):  # root lists any folder here: the failure is simulated
        if str(path).endswith("CR1"):
            raise PermissionError(13, "Permission denied")
        return listed(path)

    monkeypatch.setattr(os, "scandir", stale)
    report = ingest_path(store, "dicom", images, prune=True)
    assert_accounted(store, report)
    assert report.pruned == 0 and report.warnings["prune.refused.unread"] == 1
    assert len(rows(store, "image_occurrence")) == 2


def test_a_second_file_of_one_omop_table_stops_the_prune(store, tmp_path):
    """An export split into person.csv and PERSON.csv.gz: one is read, the other noted as not
    read, and --prune removed the persons only the other held."""
    import gzip

    header = "person_id,gender_concept_id,year_of_birth,race_concept_id,ethnicity_concept_id\n"
    folder = tmp_path / "omop"
    folder.mkdir()
    (folder / "person.csv").write_text(header + "1,8507,1950,0,0\n2,8532,1960,0,0\n")
    assert_accounted(store, ingest_path(store, "omop", folder))
    (folder / "person.csv").write_text(header + "1,8507,1950,0,0\n")
    (folder / "PERSON.csv.gz").write_bytes(gzip.compress((header + "2,8532,1960,0,0\n").encode()))
    report = ingest_path(store, "omop", folder, prune=True)
    assert_accounted(store, report)
    assert report.pruned == 0 and report.warnings["prune.refused.unread"] == 1
    assert len(rows(store, "person")) == 2
