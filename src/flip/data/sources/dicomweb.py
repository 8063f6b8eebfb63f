"""A PACS over DICOMweb -> one image_occurrence row per series, pointing at its WADO-RS URL.

QIDO-RS finds the studies, page by page until one brings none new, and each study's
instances in one search
whose attributes carry their series (Series Instance UID, Modality, dates): no
search per series. Only attributes travel, and the pixels stay in the PACS (a row
keeps the series' or instance's WADO-RS URL for a task that needs them). A series
names its patient by PatientID, matched to a person already in the store by their
MRN. Instances are accounted for as DICOM files are (see `flip.data.sources.dicom`):
the first image instance of a series (by InstanceNumber) stands for it, later ones
become instance rows of it, and non-image objects (by SOP Class UID) are skipped by
their rule.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pydicom
import requests

from flip.data.sources.dicom import SeriesAccount
from flip.data.sources.records import Rejected, SourceRecord

#: Study attributes asked of QIDO-RS beyond those it must return.
STUDY_FIELDS = ["PatientID", "StudyDate", "NumberOfStudyRelatedInstances"]
#: Instance attributes asked of QIDO-RS beyond those it must return: what a series'
#: record needs, so that a study's instance search is the only search below it.
INSTANCE_FIELDS = [
    "SeriesInstanceUID",
    "Modality",
    "SeriesDate",
    "AcquisitionDate",
    "ContentDate",
    "SOPClassUID",
    "InstanceNumber",
]


class DicomWebError(RuntimeError):
    """The DICOMweb server could not be read; the message says where it stopped."""


def read_server(
    base_url: str,
    page: int = 100,
    session: requests.Session | None = None,
    attempts: int = 5,
) -> Iterator[SourceRecord]:
    """Every instance of every study on the server, studies `page` at a time, as records,
    until a page brings no study not seen before (a server may cap a page below `page`, or
    ignore the offset).

    `session` carries what the PACS needs of each request (credentials, certificates); a
    request that fails is tried up to `attempts` times, waiting 2, 4, 8… s between tries.
    """
    from dicomweb_client.api import DICOMwebClient

    base = base_url.rstrip("/")
    web = DICOMwebClient(url=base, session=session)
    web.set_http_retry_params(max_attempts=attempts)
    account = SeriesAccount()
    offset = 0
    read: set[str] = set()
    while True:
        studies = _ask(
            base, offset, web.search_for_studies, offset=offset, limit=page, fields=STUDY_FIELDS
        )
        fresh = [s for s in studies if _value(s, "0020000D") not in read]
        if not fresh:
            return
        for study in fresh:
            uid = _value(study, "0020000D")
            read.add(uid)
            count = _value(study, "00201208")
            expected = int(count) if count.isdigit() else None
            found = _study_instances(base, offset, web.search_for_instances, uid, expected)
            by_series: dict[str, list[dict[str, Any]]] = {}
            for instance in found:
                by_series.setdefault(_value(instance, "0020000E"), []).append(instance)
            for series_uid, instances in by_series.items():
                where = f"{base}/studies/{uid}/series/{series_uid}"
                for instance in sorted(instances, key=_instance_order):
                    location = f"{where}/instances/{_value(instance, '00080018')}"
                    yield _instance(account, {**study, **instance}, location, where)
        offset += len(studies)


def _study_instances(
    base: str, done: int, search: Callable[..., Any], uid: str, expected: int | None
) -> list[dict[str, Any]]:
    """A study's instances: one search, and more only while fewer than the study's count of
    instances came back (a server may cut a result short); without a count, until one
    brings no instance not seen before (empty, or the same again from a server that
    ignores the offset)."""
    found: list[dict[str, Any]] = []
    uids: set[str] = set()
    while True:
        more = _ask(base, done, search, uid, fields=INSTANCE_FIELDS, offset=len(found))
        fresh = [i for i in more if _value(i, "00080018") not in uids]
        uids.update(_value(i, "00080018") for i in fresh)
        found += fresh
        if not fresh or (expected is not None and len(found) >= expected):
            return found


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


def _ask(
    base: str, done: int, search: Callable[..., Any], *args: Any, **kwargs: Any
) -> list[dict[str, Any]]:
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


#: WADO-RS media type asked for: DICOM objects in the transfer syntax they are stored in.
_STORED = (("application/dicom", "*"),)


def retrieve(uri: str, session: requests.Session | None = None) -> list[pydicom.Dataset]:
    """The objects at a WADO-RS series or instance URL (as image rows keep them), pixels
    included, in their stored transfer syntax; a DicomWebError naming the URL otherwise."""
    from dicomweb_client.api import DICOMwebClient

    base, _, path = uri.partition("/studies/")
    parts = path.split("/")
    if (
        len(parts) not in (3, 5)
        or parts[1] != "series"
        or (len(parts) == 5 and parts[3] != "instances")
    ):
        raise DicomWebError(f"{uri}: not a WADO-RS series or instance URL")
    web = DICOMwebClient(url=base, session=session)
    try:
        if len(parts) == 5:
            return [web.retrieve_instance(parts[0], parts[2], parts[4], media_types=_STORED)]
        return web.retrieve_series(parts[0], parts[2], media_types=_STORED)
    except (requests.RequestException, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DicomWebError(f"{uri}: cannot be retrieved: {first}") from exc
