"""DICOM files (a PACS export or a folder of studies) -> one image_occurrence row per series.

Only the header is read; the pixels stay in their files and the row keeps the
path. A file names its patient by PatientID, which FLIP matches to a person
already in the store by their source value (the MRN a FHIR Patient identifier
or a CSV extract carried), so images are ingested after the patients.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import orjson
import pydicom
from pydicom.errors import InvalidDicomError

from flip.data.sources.records import Rejected, SourceEvent, SourceRecord

#: The code system of DICOM modalities (DX, CT, MR…), as FHIR names it.
MODALITY_SYSTEM = "http://dicom.nema.org/resources/ontology/DCM"
#: Person keys of records that name a patient by source value (MRN).
MRN_PREFIX = "mrn:"
_REQUIRED = ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "Modality", "StudyDate")
_HEAD = 4096


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))


def _header(ds: pydicom.Dataset) -> bytes:
    """The header's identifying tags as JSON: the record's raw bytes for provenance."""
    return orjson.dumps({k: str(ds.get(k, "")) for k in (*_REQUIRED, "SOPInstanceUID")})


def read_file(path: Path) -> SourceRecord:
    """The image record of one DICOM file, or why it was rejected."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, ValueError) as exc:
        with path.open("rb") as handle:
            head = handle.read(_HEAD)
        return Rejected(None, str(path), "dicom.unreadable", f"not a DICOM file: {exc}", head)
    return series_record(ds, str(path), local_path=str(path.resolve()))


def series_record(ds: pydicom.Dataset, location: str, **where: str) -> SourceRecord:
    """The image record of one series from its identifying attributes, or why it was rejected.

    `where` says where the pixels are: `local_path` (a file) or `wadors_uri` (a PACS).
    """
    raw = _header(ds)
    missing = [tag for tag in _REQUIRED if not str(ds.get(tag, "")).strip()]
    key = str(ds.get("SeriesInstanceUID", "")).strip() or None
    if missing:
        message = f"the header lacks {', '.join(missing)}"
        return Rejected(key, location, "dicom.tag_missing", message, raw)
    try:
        taken = datetime.strptime(str(ds.StudyDate).strip(), "%Y%m%d").date()
    except ValueError:
        message = f"StudyDate {ds.StudyDate!r} is not a YYYYMMDD date"
        return Rejected(key, location, "dicom.date_invalid", message, raw)
    return SourceEvent(
        key=f"series/{ds.SeriesInstanceUID}",
        person_key=f"{MRN_PREFIX}{str(ds.PatientID).strip()}",
        system=MODALITY_SYSTEM,
        code=str(ds.Modality).strip(),
        start=taken,
        default_table="image_occurrence",
        location=location,
        raw=raw,
        detail={
            "study_uid": str(ds.StudyInstanceUID),
            "series_uid": str(ds.SeriesInstanceUID),
            **where,
        },
    )


def read_path(path: Path) -> Iterator[SourceRecord]:
    """Every file under `path` (a file or a folder, searched recursively), in name order."""
    for file in _files(path):
        yield read_file(file)
