"""The radiology world: seeded head CTs as valid DICOM series, their records, and the truth."""

import json

import orjson
import pydicom
from typer.testing import CliRunner

from flip.cli.app import app
from flip.synth.radiology import CT_IMAGE, ENHANCED_CT_IMAGE, write_world


def test_the_world_writes_series_records_and_truth_the_same_for_a_seed(tmp_path):
    written = write_world(tmp_path / "a", n_sites=2, seed=5, people=4, slices=8, size=16)
    write_world(tmp_path / "b", n_sites=2, seed=5, people=4, slices=8, size=16)
    north, south = written
    assert (north.site.storage, south.site.storage) == ("instances", "enhanced")
    assert (north.files, south.files) == (4 * 8, 4)
    for w in written:
        for path in sorted((w.folder / "dicom").rglob("*.dcm")):
            twin = tmp_path / "b" / path.relative_to(tmp_path / "a")
            assert path.read_bytes() == twin.read_bytes(), "the same seed, the same files"
    slice_ = pydicom.dcmread(next((north.folder / "dicom").rglob("0002.dcm")))
    assert slice_.SOPClassUID == CT_IMAGE and slice_.PatientID.startswith("NO")
    assert slice_.pixel_array.shape == (16, 16) and slice_.RescaleIntercept == -1024
    enhanced = pydicom.dcmread(next((south.folder / "dicom").rglob("0001.dcm")))
    assert enhanced.SOPClassUID == ENHANCED_CT_IMAGE and enhanced.NumberOfFrames == 8
    assert enhanced.pixel_array.shape == (8, 16, 16)
    assert len(enhanced.PerFrameFunctionalGroupsSequence) == 8

    truth = json.loads((tmp_path / "a" / "truth" / "north.json").read_text())
    bundle = orjson.loads((north.folder / "fhir" / "bundle.json").read_bytes())
    kinds = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert kinds.count("Patient") == kinds.count("Observation") == 4
    assert kinds.count("Condition") == sum(t["infarct"] for t in truth.values()) == north.infarcts
    assert not (north.folder / "truth").exists(), "the truth is never inside an export"


def test_the_cli_writes_a_world_and_refuses_bad_sizes(tmp_path):
    runner = CliRunner()
    args = ["synth", "radiology", "--out", str(tmp_path), "--sites", "1", "--people", "2"]
    done = runner.invoke(app, [*args, "--slices", "8", "--size", "16"])
    assert done.exit_code == 0, done.output
    assert "north (instances): 2 studies" in done.output
    bad = runner.invoke(app, [*args, "--slices", "4"])
    assert bad.exit_code == 1 and "--slices must be 8-256" in bad.output
