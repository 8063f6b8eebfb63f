"""Write one synthetic site's export in its own format."""

from __future__ import annotations

from pathlib import Path

from flip.synth.csv_export import write_csv_extract_truth
from flip.synth.fhir_export import write_bundles, write_ndjson
from flip.synth.images import write_radiographs
from flip.synth.shapes import Truth
from flip.synth.world import Patient, SiteProfile


def export_site(
    profile: SiteProfile,
    patients: list[Patient],
    folder: Path,
    seed: int = 0,
    *,
    images: bool = True,
) -> Path:
    """Write the site's export under `folder` and return the path to ingest.

    With `images`, whatever the format, the site's PACS export sits beside it in
    `folder/dicom`: one chest radiograph per patient (`flip site ingest dicom`).
    """
    return export_site_truth(profile, patients, folder, seed, images=images)[0]


def export_site_truth(
    profile: SiteProfile,
    patients: list[Patient],
    folder: Path,
    seed: int = 0,
    *,
    images: bool = True,
) -> tuple[Path, Truth]:
    """`export_site`, with what a faithful ingest must make of the export's shapes."""
    shapes = profile.shapes
    if profile.export_format == "fhir-bundle":
        truth = write_bundles(profile.name, patients, folder, shapes=shapes, seed=seed)
    elif profile.export_format == "fhir-ndjson":
        truth = write_ndjson(profile.name, patients, folder, shapes=shapes, seed=seed)
    elif profile.export_format == "csv":
        truth = write_csv_extract_truth(profile.name, patients, folder, shapes, seed)[1]
    else:
        raise ValueError(f"unknown export format {profile.export_format!r}")
    if images:
        write_radiographs(profile.name, patients, folder / "dicom", seed)
    return folder, truth
