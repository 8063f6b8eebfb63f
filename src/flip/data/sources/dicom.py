"""DICOM files (a PACS export or a folder of studies) -> one image_occurrence row per series.

Only the header is read; the pixels stay in their files and the row keeps the
path. A file names its patient by PatientID, which FLIP matches to a person
already in the store by their source value (the MRN a FHIR Patient identifier
or a CSV extract carried), so images are ingested after the patients.

Every file is accounted for. The first image instance of a series (in file-name
order) stands for the series and becomes its row; each later instance of that
series is skipped under `dicom.series_represented`. A non-image object (RT plan,
ECG, structured report…) is skipped under `dicom.non_image.<kind>` (see
`flip.data.sources.dicom_classes`). A file that is not DICOM, or whose header
cannot be read or lacks what a row needs, is quarantined with the reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path

import orjson
import pydicom
from pydicom.errors import InvalidDicomError

from flip.data.sources.dicom_classes import non_image_rule, sop_class_name
from flip.data.sources.records import Rejected, Skipped, SourceEvent, SourceRecord

#: The code system of DICOM modalities (DX, CT, MR…), as FHIR names it.
MODALITY_SYSTEM = "http://dicom.nema.org/resources/ontology/DCM"
#: Person keys of records that name a patient by source value (MRN).
MRN_PREFIX = "mrn:"
#: The skip rule of an instance whose series another instance already stands for.
SERIES_REPRESENTED = "dicom.series_represented"
_REQUIRED = ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "Modality")
#: Where a series' date comes from: StudyDate, else the first of the others that parses.
_DATES = ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate")
_DATE_FORMATS = ("%Y%m%d", "%Y.%m.%d")
_HEAD = 4096
#: Values longer than this are not read (the pixels): only their length and place.
_DEFER = 1024
_PIXELS = (0x7FE00010, 0x7FE00008, 0x7FE00009)
_UNDEFINED_LENGTH = 0xFFFFFFFF


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))


def _text(ds: pydicom.Dataset, keyword: str) -> str:
    return str(ds.get(keyword, "") or "").strip()


def _header(ds: pydicom.Dataset) -> bytes:
    """The header's identifying tags as JSON: the record's raw bytes for provenance."""
    keys = (*_REQUIRED, "StudyDate", "SOPInstanceUID", "SOPClassUID")
    return orjson.dumps({k: _text(ds, k) for k in keys})


def sop_class_uid(ds: pydicom.Dataset) -> str:
    """The object's SOP Class UID, from its header or else its file meta information."""
    found = _text(ds, "SOPClassUID")
    meta = getattr(ds, "file_meta", None)
    if not found and meta is not None:
        found = str(meta.get("MediaStorageSOPClassUID", "") or "").strip()
    return found


def _parse_date(value: str) -> date | None:
    for form in _DATE_FORMATS:
        try:
            return datetime.strptime(value, form).date()
        except ValueError:
            continue
    return None


class SeriesAccount:
    """Accounts for a source's instances one by one, so each series is stored once.

    The first image instance of a series becomes its record; later instances of
    it are skipped, and one that names another patient is quarantined.
    """

    def __init__(self) -> None:
        self._represented: dict[str, tuple[str, str]] = {}

    def instance(
        self,
        ds: pydicom.Dataset,
        location: str,
        pixels: tuple[str, str] | None = None,
        **where: str,
    ) -> SourceRecord:
        """The record of one instance: its series, a skip with its rule, or a rejection.

        `pixels` is (rule, message) when the file's pixel data is missing or cut short:
        such an image cannot stand for its series.
        """
        try:
            return self._instance(ds, location, pixels, where)
        except (ValueError, TypeError, KeyError, UnicodeError, OverflowError) as exc:
            message = f"the header cannot be decoded: {type(exc).__name__}: {exc}"
            return Rejected(None, location, "dicom.unreadable", message, b"")

    def _instance(
        self,
        ds: pydicom.Dataset,
        location: str,
        pixels: tuple[str, str] | None,
        where: dict[str, str],
    ) -> SourceRecord:
        sop_class = sop_class_uid(ds)
        key = f"instance/{_text(ds, 'SOPInstanceUID') or location}"
        rule = non_image_rule(sop_class, _text(ds, "Modality"))
        if rule is not None:
            return Skipped(key, location, rule, f"{sop_class_name(sop_class)} is not an image")
        series = _text(ds, "SeriesInstanceUID")
        if series in self._represented:
            first, patient = self._represented[series]
            if patient != _text(ds, "PatientID"):
                message = (
                    f"series {series} belongs to PatientID {patient!r} in {first}, "
                    f"but this instance names {_text(ds, 'PatientID')!r}"
                )
                return Rejected(key, location, "dicom.series_conflict", message, _header(ds))
            message = f"an instance of series {series}, which {first} stands for"
            return Skipped(key, location, SERIES_REPRESENTED, message)
        if pixels is not None:
            return Rejected(key, location, *pixels, _header(ds))
        record = series_record(ds, location, **where)
        if type(record) is SourceEvent:
            self._represented[series] = (location, _text(ds, "PatientID"))
        return record


def _read(path: Path) -> pydicom.Dataset | Rejected:
    """The header of one file, or why it is not a readable DICOM file.

    A file without the DICOM preamble (older ACR-NEMA-style writers) is read anyway
    when it then names a SOP Class, as a real instance does.
    """
    try:
        return pydicom.dcmread(path, defer_size=_DEFER)
    except InvalidDicomError:
        reason = "not a DICOM file (no DICOM preamble, and no SOP Class UID without one)"
        try:
            forced = pydicom.dcmread(path, defer_size=_DEFER, force=True)
            if _text(forced, "SOPClassUID"):
                return forced
        except Exception as exc:  # a non-DICOM file read by force fails in any way
            reason += f": {type(exc).__name__}"
    except Exception as exc:  # truncated or corrupt files raise from deep inside pydicom
        reason = f"unreadable DICOM file: {type(exc).__name__}: {exc}"
    with path.open("rb") as handle:
        head = handle.read(_HEAD)
    return Rejected(None, str(path), "dicom.unreadable", reason, head)


def _pixel_problem(ds: pydicom.Dataset, size: int) -> tuple[str, str] | None:
    """(rule, message) when a file has no pixel data, or less than its header declares."""
    element = next((ds._dict[tag] for tag in _PIXELS if tag in ds._dict), None)
    if element is None:
        return "dicom.pixel_data_missing", "the file holds no pixel data"
    length, start = getattr(element, "length", 0), getattr(element, "value_tell", None)
    if start is not None and length != _UNDEFINED_LENGTH and start + length > size:
        message = f"the pixel data is cut short: {size - start} of {length} bytes"
        return "dicom.pixel_data_truncated", message
    return None


def read_file(path: Path, account: SeriesAccount | None = None) -> SourceRecord:
    """The record of one DICOM file (see `SeriesAccount`), or why it was rejected."""
    ds = _read(path)
    if isinstance(ds, Rejected):
        return ds
    account = account or SeriesAccount()
    pixels = _pixel_problem(ds, path.stat().st_size)
    return account.instance(ds, str(path), pixels, local_path=str(path.resolve()))


def series_record(ds: pydicom.Dataset, location: str, **where: str) -> SourceRecord:
    """The image record of one series from its identifying attributes, or why it was rejected.

    `where` says where the pixels are: `local_path` (a file) or `wadors_uri` (a PACS).
    The date is StudyDate, else SeriesDate, AcquisitionDate or ContentDate, with a
    warning (`dicom.study_date_missing` or `dicom.study_date_invalid`).
    """
    raw = _header(ds)
    missing = [tag for tag in _REQUIRED if not _text(ds, tag)]
    dates = {tag: _text(ds, tag) for tag in _DATES if _text(ds, tag)}
    if not dates:
        missing.append("StudyDate (nor SeriesDate, AcquisitionDate, ContentDate)")
    key = _text(ds, "SeriesInstanceUID") or None
    if missing:
        message = f"the header lacks {', '.join(missing)}"
        return Rejected(key, location, "dicom.tag_missing", message, raw)
    found = next(((tag, d) for tag, v in dates.items() if (d := _parse_date(v))), None)
    if found is None:
        shown = ", ".join(f"{tag} {value!r}" for tag, value in dates.items())
        message = f"no date of the series is a YYYYMMDD date: {shown}"
        return Rejected(key, location, "dicom.date_invalid", message, raw)
    tag, taken = found
    warnings: tuple[str, ...] = ()
    if tag != "StudyDate":
        warnings = (
            "dicom.study_date_invalid" if "StudyDate" in dates else "dicom.study_date_missing",
        )
    return SourceEvent(
        key=f"series/{ds.SeriesInstanceUID}",
        person_key=f"{MRN_PREFIX}{_text(ds, 'PatientID')}",
        system=MODALITY_SYSTEM,
        code=_text(ds, "Modality"),
        start=taken,
        default_table="image_occurrence",
        location=location,
        raw=raw,
        detail={
            "study_uid": _text(ds, "StudyInstanceUID"),
            "series_uid": _text(ds, "SeriesInstanceUID"),
            **where,
        },
        warnings=warnings,
    )


def read_path(path: Path) -> Iterator[SourceRecord]:
    """Every file under `path` (a file or a folder, searched recursively), in name order."""
    account = SeriesAccount()
    for file in _files(path):
        yield read_file(file, account)
