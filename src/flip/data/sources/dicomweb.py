"""A PACS over DICOMweb -> one image_occurrence row per series, pointing at its WADO-RS URL.

QIDO-RS finds the studies, page by page, each study's series and each series'
instances; only their attributes travel, and the pixels stay in the PACS (the
row keeps the series' WADO-RS URL for a task that needs them). A series names its
patient by PatientID, matched to a person already in the store by their MRN.
Instances are accounted for as DICOM files are (see `flip.data.sources.dicom`):
the first image instance of a series (by InstanceNumber) stands for it, later
ones and non-image objects (by SOP Class UID) are skipped by their rule.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pydicom
import requests

from flip.data.sources.dicom import SeriesAccount
from flip.data.sources.records import Rejected, SourceRecord

#: Study attributes asked of QIDO-RS beyond those it must return.
STUDY_FIELDS = ["PatientID", "StudyDate"]
#: Instance attributes asked of QIDO-RS beyond those it must return.
INSTANCE_FIELDS = ["SOPClassUID", "InstanceNumber", "ContentDate"]


class DicomWebError(RuntimeError):
    """The DICOMweb server could not be read; the message says where it stopped."""


def read_server(base_url: str, page: int = 100) -> Iterator[SourceRecord]:
    """Every series of every study on the server, studies `page` at a time."""
    from dicomweb_client.api import DICOMwebClient

    base = base_url.rstrip("/")
    web = DICOMwebClient(url=base)
    account = SeriesAccount()
    offset = 0
    while True:
        studies = _ask(
            base, offset, web.search_for_studies, offset=offset, limit=page, fields=STUDY_FIELDS
        )
        for study in studies:
            uid = _value(study, "0020000D")
            found = _ask(base, offset, web.search_for_series, uid)
            for series in found:
                series_uid = _value(series, "0020000E")
                where = f"{base}/studies/{uid}/series/{series_uid}"
                instances = _ask(
                    base,
                    offset,
                    web.search_for_instances,
                    uid,
                    series_uid,
                    fields=INSTANCE_FIELDS,
                    get_remaining=True,
                )
                for instance in sorted(instances, key=_instance_order):
                    location = f"{where}/instances/{_value(instance, '00080018')}"
                    yield _instance(account, {**study, **series, **instance}, location, where)
        if len(studies) < page:
            return
        offset += len(studies)


def _instance(
    account: SeriesAccount, attributes: dict[str, Any], location: str, series: str
) -> SourceRecord:
    """The record of one instance from its QIDO-RS attributes, or why it was rejected."""
    try:
        merged = pydicom.Dataset.from_json(attributes)
    except (ValueError, TypeError, KeyError) as exc:
        message = f"the server's attributes cannot be decoded: {type(exc).__name__}: {exc}"
        return Rejected(None, location, "dicom.unreadable", message, orjson.dumps(attributes))
    return account.instance(merged, location, None, wadors_uri=series)


def _ask(base: str, done: int, search, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
    """One QIDO-RS search's results; a DicomWebError, saying how far the read got, if it fails."""
    try:
        return search(*args, **kwargs) or []
    except (requests.RequestException, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DicomWebError(f"{base}: the server stopped after {done} studies: {first}") from exc


def _instance_order(attributes: dict[str, Any]) -> tuple[int, str]:
    """Instances by InstanceNumber (those without one last), then SOP Instance UID."""
    number = _value(attributes, "00200013")
    return (int(number) if number.lstrip("-").isdigit() else 2**31, _value(attributes, "00080018"))


def _value(attributes: dict[str, Any], tag: str) -> str:
    values = attributes.get(tag, {}).get("Value") or [""]
    return str(values[0])
