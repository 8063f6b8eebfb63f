"""Write one synthetic site's export in its own format."""

from __future__ import annotations

from pathlib import Path

from flip.synth.csv_export import write_csv_extract
from flip.synth.fhir_export import write_bundles, write_ndjson
from flip.synth.images import write_radiographs
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
    if profile.export_format == "fhir-bundle":
        write_bundles(profile.name, patients, folder)
    elif profile.export_format == "fhir-ndjson":
        write_ndjson(profile.name, patients, folder)
    elif profile.export_format == "csv":
        write_csv_extract(profile.name, patients, folder)
    else:
        raise ValueError(f"unknown export format {profile.export_format!r}")
    if images:
        write_radiographs(profile.name, patients, folder / "dicom", seed)
    return folder
