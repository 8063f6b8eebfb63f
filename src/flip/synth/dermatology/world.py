"""Write a whole dermatology world: each site's export in its own format under OUT/SITE,
and the ground truth under OUT/truth, never inside an export."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from flip.synth.dermatology import dicom, fhir, hl7, warehouse
from flip.synth.dermatology.cohort import Person, draw_site
from flip.synth.dermatology.letters import Letter, write_letter
from flip.synth.dermatology.photos import PhotoSpec, render
from flip.synth.dermatology.severity import REGIONS
from flip.synth.dermatology.sites import SiteSpec, default_sites

_BATCH = 48
_HOSPITALS = {
    "st-aster": "St Aster Hospital",
    "northbridge": "Northbridge General",
    "riverside": "Riverside Infirmary",
    "eastgate": "Eastgate Hospital",
}
_CAMERAS = {"fhir": "Canon/EOS 250D", "hl7v2": "Nikon/D3500", "warehouse": "Apple/iPhone 12"}
#: Each export kind's sources, as (flip site ingest KIND, folder under the site).
INGESTS = {
    "fhir": [("fhir", "fhir"), ("dicom", "dicom")],
    "hl7v2": [("hl7v2", "hl7v2/feed.hl7"), ("csv", "pharmacy"), ("dicom", "pacs")],
    "warehouse": [("csv", "warehouse")],
}


@dataclass(frozen=True)
class SiteWritten:
    """What was written for one site: where, and the counts a faithful ingest must reach."""

    spec: SiteSpec
    folder: Path
    counts: dict[str, int]


def write_world(
    out: Path,
    n_sites: int = 4,
    seed: int = 0,
    size: str = "default",
    sites: list[SiteSpec] | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[SiteWritten]:
    """Write every site's export and the ground truth under `out`; `sites` overrides the
    default hospitals (tests use tiny ones)."""
    specs = sites or default_sites(n_sites, size)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for spec in specs:
        written.append(_write_site(out, spec, seed))
        if progress:
            progress(f"{spec.name}: {spec.n_persons} people as {spec.export}")
    summary = {
        "seed": seed,
        "size": size,
        "sites": [
            {
                "name": w.spec.name,
                "export": w.spec.export,
                "folder": w.folder.name,
                "ingest": [{"kind": k, "path": p} for k, p in INGESTS[w.spec.export]],
                "site_config": "site.yaml",
            }
            for w in written
        ],
    }
    (out / "world.json").write_text(json.dumps(summary, indent=2))
    return written


def _write_site(out: Path, spec: SiteSpec, seed: int) -> SiteWritten:
    people = draw_site(spec, seed)
    folder, truth = out / spec.name, out / "truth" / spec.name
    folder.mkdir(parents=True, exist_ok=True)
    truth.mkdir(parents=True, exist_ok=True)
    letters = _letters(spec, people, seed, truth)
    identifier = {
        "system": fhir.mrn_system(spec.name),
        "hl7v2_authority": spec.name.upper(),
        "hl7v2_type": "MR",
    }
    (folder / "site.yaml").write_text(yaml.safe_dump({"person_identifier": identifier}))
    if spec.export == "fhir":
        fhir.write_bundles(spec.name, people, letters, folder / "fhir")
        photo_folder = folder / "dicom"
    elif spec.export == "hl7v2":
        hl7.write_feed(spec.name, people, letters, folder / "hl7v2" / "feed.hl7")
        warehouse.write_pharmacy(spec.name, people, folder / "pharmacy")
        photo_folder = folder / "pacs"
    elif spec.export == "warehouse":
        warehouse.write_tables(spec.name, people, letters, folder / "warehouse")
        photo_folder = folder / "warehouse" / "photos"
    else:
        raise ValueError(f"site {spec.name}: unknown export {spec.export!r}")
    _write_photos(spec, people, photo_folder, seed, truth)
    _write_persons(people, truth)
    counts = {
        "persons": len(people),
        "conditions": sum(1 + p.psa for p in people),
        "measurements": sum(len(v.scores) for p in people for v in p.visits)
        + sum(len(p.labs) + 1 for p in people),
        "drugs": sum(len(p.treatments) for p in people),
        "notes": sum(len(v) for v in letters.values()),
        "images": sum(len(p.photos) for p in people),
    }
    (truth / "counts.json").write_text(json.dumps(counts, indent=2))
    return SiteWritten(spec, folder, counts)


def _letters(
    spec: SiteSpec, people: list[Person], seed: int, truth: Path
) -> dict[int, list[tuple[int, Letter]]]:
    """The clinic letters of the baseline and week-16 visits; their PHI spans go to truth."""
    rng = np.random.default_rng([seed, *spec.name.encode(), *b"letters"])
    hospital = _HOSPITALS.get(spec.name, f"{spec.name.title()} Hospital")
    letters: dict[int, list[tuple[int, Letter]]] = {}
    with (truth / "letters_phi.jsonl").open("w", encoding="utf-8") as handle:
        for p in people:
            for number, visit in enumerate(p.visits):
                if visit.week not in (0, 16):
                    continue
                letter = write_letter(rng, p, visit, hospital)
                letters.setdefault(p.serial, []).append((number, letter))
                spans = [
                    {"start": s, "end": e, "kind": k, "text": letter.text[s:e]}
                    for s, e, k in letter.spans
                ]
                row = {
                    "letter": f"{p.mrn}-L{number}",
                    "person": p.mrn,
                    "week": visit.week,
                    "text": letter.text,
                    "phi": spans,
                }
                handle.write(json.dumps(row) + "\n")
    return letters


def _write_photos(
    spec: SiteSpec, people: list[Person], folder: Path, seed: int, truth: Path
) -> None:
    """Render every photograph in batches; write them in the site's way and their truth."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, *spec.name.encode(), *b"photos"])
    jobs = [(p, photo) for p in people for photo in p.photos]
    manifest, rows = [], []
    camera = _CAMERAS[spec.export]
    for start in range(0, len(jobs), _BATCH):
        batch = jobs[start : start + _BATCH]
        specs = []
        for p, photo in batch:
            s = p.visits[photo.visit].signs
            r = photo.region
            specs.append(
                PhotoSpec(
                    p.fitzpatrick,
                    p.diagnosis == "eczema",
                    float(s.area[r]),
                    float(s.erythema[r]),
                    float(s.induration[r]),
                    float(s.scaling[r]),
                )
            )
        pixels = render(rng, specs, spec.camera)
        for (p, photo), image in zip(batch, pixels, strict=True):
            visit = p.visits[photo.visit]
            jpeg = dicom.jpeg_bytes(image, spec.camera.jpeg_quality)
            if spec.export == "warehouse":
                name = f"IMG_{photo.serial:05d}.jpg"
                (folder / name).write_bytes(jpeg)
                manifest.append(
                    [
                        f"P{photo.serial:05d}",
                        p.mrn,
                        visit.day.isoformat(),
                        REGIONS[photo.region],
                        name,
                        camera,
                    ]
                )
            else:
                name = f"{p.mrn}-{photo.serial:05d}.dcm"
                ds = dicom.photo_dataset(
                    spec.name, p, visit.day, photo.visit, photo.region, photo.serial, jpeg, camera
                )
                dicom.write_photo(folder / name, ds)
            s = visit.signs
            r = photo.region
            rows.append(
                [
                    name,
                    p.mrn,
                    visit.week,
                    visit.day.isoformat(),
                    REGIONS[photo.region],
                    p.fitzpatrick,
                    p.diagnosis,
                    visit.scores.get("pasi", ""),
                    visit.scores.get("easi", ""),
                    f"{s.area[r]:.1f}",
                    s.erythema[r],
                    s.induration[r],
                    s.scaling[r],
                ]
            )
    if spec.export == "warehouse":
        warehouse.write_manifest(folder / "manifest.csv", manifest)
    with (truth / "photos.csv").open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(
            [
                "file",
                "person",
                "week",
                "date",
                "region",
                "fitzpatrick",
                "diagnosis",
                "pasi",
                "easi",
                "area",
                "erythema",
                "induration",
                "scaling",
            ]
        )
        out.writerows(rows)


def _write_persons(people: list[Person], truth: Path) -> None:
    """Per person: baseline features, the treatment started and PASI75 at week 16."""
    with (truth / "persons.csv").open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(
            [
                "person",
                "diagnosis",
                "sex",
                "age",
                "fitzpatrick",
                "bmi",
                "smoker",
                "psa",
                "prior_biologic",
                "started",
                "baseline",
                "pasi0",
                "pasi16",
                "pasi75",
            ]
        )
        for p in people:
            week16 = next(v for v in p.visits if v.week == 16)
            out.writerow(
                [
                    p.mrn,
                    p.diagnosis,
                    p.sex,
                    f"{p.age:.1f}",
                    p.fitzpatrick,
                    p.bmi,
                    int(p.smoker),
                    int(p.psa),
                    int(p.prior_biologic),
                    p.started,
                    p.baseline.day.isoformat(),
                    p.baseline.scores.get("pasi", ""),
                    week16.scores.get("pasi", ""),
                    "" if p.pasi75 is None else int(p.pasi75),
                ]
            )
