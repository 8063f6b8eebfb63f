"""The dermatology world's files: formats, truth kept apart, and seeded determinism."""

from __future__ import annotations

import csv
import json
from dataclasses import replace

import numpy as np
import pydicom
from PIL import Image

from flip.synth.dermatology import write_world
from flip.synth.dermatology.cohort import draw_site
from flip.synth.dermatology.dicom import VL_PHOTOGRAPHIC
from flip.synth.dermatology.sites import default_sites


def test_each_site_exports_in_its_own_format_and_truth_stays_outside(tiny_world):
    out, written = tiny_world
    kinds = {w.spec.name: w.spec.export for w in written}
    assert kinds == {
        "st-aster": "fhir",
        "northbridge": "hl7v2",
        "riverside": "warehouse",
        "eastgate": "fhir",
    }
    assert sorted(p.name for p in (out / "st-aster" / "fhir").iterdir())[0] == "bundle-0001.json"
    assert (out / "northbridge" / "hl7v2" / "feed.hl7").read_bytes().startswith(b"MSH|")
    assert (out / "riverside" / "warehouse" / "mapping.yaml").is_file()
    for w in written:
        exported = {p.name for p in w.folder.rglob("*")}
        assert not exported & {"persons.csv", "photos.csv", "letters_phi.jsonl", "counts.json"}
        assert (out / "truth" / w.spec.name / "photos.csv").is_file()
    world = json.loads((out / "world.json").read_text())
    assert [s["name"] for s in world["sites"]] == list(kinds)


def test_photographs_are_real_vl_photographic_dicom_and_jpeg(tiny_world):
    out, written = tiny_world
    path = next((out / "st-aster" / "dicom").glob("*.dcm"))
    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == VL_PHOTOGRAPHIC
    assert ds.Modality == "XC"
    pixels = ds.pixel_array
    assert pixels.shape == (224, 224, 3) and pixels.dtype == np.uint8
    manifest = list(
        csv.DictReader((out / "riverside" / "warehouse" / "photos" / "manifest.csv").open())
    )
    assert len(manifest) == written[2].counts["images"]
    image = Image.open(out / "riverside" / "warehouse" / "photos" / manifest[0]["file"])
    assert (image.format, image.size, image.mode) == ("JPEG", (224, 224), "RGB")


def test_the_same_seed_writes_the_same_world(tmp_path):
    sites = [replace(default_sites(1)[0], n_persons=3)]
    for name in ("a", "b"):
        write_world(tmp_path / name, seed=5, sites=sites)
    for rel in ("st-aster/fhir/bundle-0001.json", "truth/st-aster/letters_phi.jsonl"):
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    shots = sorted((tmp_path / "a" / "st-aster" / "dicom").iterdir())
    assert (
        shots[0].read_bytes()
        == (tmp_path / "b" / "st-aster" / "dicom" / shots[0].name).read_bytes()
    )
    assert draw_site(sites[0], 6)[0].bmi != draw_site(sites[0], 5)[0].bmi


def test_sites_differ_in_size_case_mix_and_skin_type():
    specs = default_sites(4)
    people = {s.name: draw_site(replace(s, n_persons=150), 1) for s in specs}
    dark = {n: np.mean([p.fitzpatrick >= 5 for p in ps]) for n, ps in people.items()}
    eczema = {n: np.mean([p.diagnosis == "eczema" for p in ps]) for n, ps in people.items()}
    assert dark["eastgate"] > 2 * dark["st-aster"]
    assert eczema["eastgate"] > eczema["riverside"] + 0.1
    assert [s.n_persons for s in specs] == sorted((s.n_persons for s in specs), reverse=True)
    assert len({s.camera for s in specs}) == 4
