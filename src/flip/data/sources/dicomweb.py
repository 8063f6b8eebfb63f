"""A PACS over DICOMweb -> one image_occurrence row per series, pointing at its WADO-RS URL.

QIDO-RS finds the studies, page by page, and each study's series; only their
attributes travel, and the pixels stay in the PACS (the row keeps the series'
WADO-RS URL for a task that needs them). A series names its patient by
PatientID, matched to a person already in the store by their MRN, as DICOM
files are (see `flip.data.sources.dicom`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pydicom
import requests

from flip.data.sources.dicom import series_record
from flip.data.sources.records import SourceRecord

#: Study attributes asked of QIDO-RS beyond those it must return.
STUDY_FIELDS = ["PatientID", "StudyDate"]


class DicomWebError(RuntimeError):
    """The DICOMweb server could not be read; the message says where it stopped."""


def read_server(base_url: str, page: int = 100) -> Iterator[SourceRecord]:
    """Every series of every study on the server, studies `page` at a time."""
    from dicomweb_client.api import DICOMwebClient

    base = base_url.rstrip("/")
    web = DICOMwebClient(url=base)
    offset = 0
    while True:
        studies = _ask(
            base, offset, web.search_for_studies, offset=offset, limit=page, fields=STUDY_FIELDS
        )
        for study in studies:
            uid = _value(study, "0020000D")
            found = _ask(base, offset, web.search_for_series, uid)
            for series in found:
                location = f"{base}/studies/{uid}/series/{_value(series, '0020000E')}"
                merged = pydicom.Dataset.from_json({**study, **series})
                yield series_record(merged, location, wadors_uri=location)
        if len(studies) < page:
            return
        offset += len(studies)


def _ask(base: str, done: int, search, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
    """One QIDO-RS search's results; a DicomWebError, saying how far the read got, if it fails."""
    try:
        return search(*args, **kwargs) or []
    except (requests.RequestException, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DicomWebError(f"{base}: the server stopped after {done} studies: {first}") from exc


def _value(attributes: dict[str, Any], tag: str) -> str:
    values = attributes.get(tag, {}).get("Value") or [""]
    return str(values[0])
