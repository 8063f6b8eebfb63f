"""DICOM files (a PACS export or a folder of studies) -> one image_occurrence row per series.

Only the header is read; the pixels stay in their files and the row keeps the
path. A file names its patient by PatientID, which FLIP matches to a person
already in the store by their source value (the MRN a FHIR Patient identifier
or a CSV extract carried), so images are ingested after the patients.

Every file is accounted for, and each instance keeps its own provenance. The
first image instance of a series (in file-name order) stands for the series and
becomes its image_occurrence row; each later instance of that series becomes an
image_instance row (record key `instance/<SOP Instance UID>`) linked to it; a file that
comes to stand for its series (the one before it removed) takes the place of its
instance row. A second
file of an instance already read (the same SOP Instance UID) is skipped under
`dicom.instance_repeated`. A gzip-compressed file (`.dcm.gz`, or gzip's magic
bytes under any name) is read as the DICOM file it holds. A non-image object (RT plan,
ECG, structured report…) is skipped under `dicom.non_image.<kind>` (see
`flip.data.sources.dicom_classes`). A file that is not DICOM, that cannot be
opened or read (a broken link, an I/O error), or whose header cannot be decoded
or lacks what a row needs, is quarantined with the reason. Linked folders are
followed once each; a folder seen before (a second link to it, a link loop) or
that cannot be listed, and anything that is not a regular file, is listed as not
read. Hidden files (names starting with a dot) are not read.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path

import orjson
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.uid import DeflatedExplicitVRLittleEndian

from flip.data.sources.dicom_classes import non_image_rule, sop_class_name
from flip.data.sources.records import Rejected, Skipped, SourceEvent, SourceRecord, Unread

#: The code system of DICOM modalities (DX, CT, MR…), as FHIR names it.
MODALITY_SYSTEM = "http://dicom.nema.org/resources/ontology/DCM"
#: Person keys of records that name a patient by source value (MRN).
MRN_PREFIX = "mrn:"
#: The skip rule of a second file of an instance already read (same SOP Instance UID).
INSTANCE_REPEATED = "dicom.instance_repeated"
#: The first bytes of a gzip-compressed file.
_GZIP_MAGIC = b"\x1f\x8b"
_REQUIRED = ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "Modality")
#: The UIDs a row or its provenance keeps, and the longest a UID may be (PS3.5 9.1).
_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
_UID_LENGTH = 64
#: What a series' owner is called in a conflict's message.
_OWNER = {"PatientID": "PatientID", "StudyInstanceUID": "study"}
#: Where a series' date comes from: StudyDate, else the first of the others that parses.
_DATES = ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate")
_DATE_FORMATS = ("%Y%m%d", "%Y.%m.%d")
_HEAD = 4096
#: Values longer than this are not read (the pixels): only their length and place.
_DEFER = 1024
_PIXELS = (0x7FE00010, 0x7FE00008, 0x7FE00009)
_UNDEFINED_LENGTH = 0xFFFFFFFF


def _files(path: Path) -> Iterator[Path | Unread]:
    """The files under `path` in name order, each linked folder followed once (see module doc)."""
    if not path.is_dir():
        yield path
        return
    seen: dict[str, Path] = {}
    yield from _folder(path, seen)


def _folder(folder: Path, seen: dict[str, Path]) -> Iterator[Path | Unread]:
    real = os.path.realpath(folder)
    if real in seen:
        yield Unread(str(folder), f"the same folder as {seen[real]}")
        return
    seen[real] = folder
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        reason = f"the folder cannot be listed: {exc.strerror or exc}"
        yield Unread(str(folder), reason, failed=True)
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        path = Path(entry.path)
        if entry.is_dir():
            yield from _folder(path, seen)
        elif entry.is_file() or (entry.is_symlink() and not path.exists()):
            yield path
        else:
            yield Unread(entry.path, "not a regular file")


def _text(ds: pydicom.Dataset, keyword: str) -> str:
    return str(ds.get(keyword, "") or "").strip()


def _header(ds: pydicom.Dataset, **where: str) -> bytes:
    """The header's identifying tags and dates, and where the pixels are, as JSON: the
    record's raw bytes for provenance (a moved file or a changed date changes them)."""
    keys = (*_REQUIRED, *_DATES, "SOPInstanceUID", "SOPClassUID")
    return orjson.dumps({**{k: _text(ds, k) for k in keys}, **where})


def _instance_key(ds: pydicom.Dataset) -> str | None:
    uid = _text(ds, "SOPInstanceUID")
    return f"instance/{uid}" if uid else None


def _uid_problem(ds: pydicom.Dataset) -> str | None:
    """Why a UID of the header cannot be kept (longer than DICOM allows), or None."""
    for keyword in _UIDS:
        uid = _text(ds, keyword)
        if len(uid) > _UID_LENGTH:
            return (
                f"{keyword} is {len(uid)} characters long, longer than {_UID_LENGTH} "
                f"that DICOM allows: {uid[:_UID_LENGTH]}…"
            )
    return None


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

    The first image instance of a series becomes its series record; later instances
    of it become instance records of that series, and one that names another patient
    or study is quarantined.
    """

    def __init__(self) -> None:
        self._represented: dict[str, tuple[str, str, str, date]] = {}
        self._instances: dict[str, str] = {}

    def instance(
        self,
        ds: pydicom.Dataset,
        location: str,
        pixels: tuple[str, str] | None = None,
        **where: str,
    ) -> SourceRecord:
        """The record of one instance: its series, an instance of a series already read,
        a skip with its rule, or a rejection.

        `pixels` is (rule, message) when the file's pixel data is missing or cut short:
        such an image is quarantined (the next good instance stands for its series).
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
        key = _instance_key(ds)
        rule = non_image_rule(sop_class, _text(ds, "Modality"))
        if rule is not None:
            return Skipped(key, location, rule, f"{sop_class_name(sop_class)} is not an image")
        bad_uid = _uid_problem(ds)
        if bad_uid is not None:
            return Rejected(None, location, "dicom.uid_invalid", bad_uid, _header(ds))
        uid = _text(ds, "SOPInstanceUID")
        if uid in self._instances:
            message = f"the same instance (SOP Instance UID {uid}) as {self._instances[uid]}"
            return Skipped(key, location, INSTANCE_REPEATED, message)
        series = _text(ds, "SeriesInstanceUID")
        if series in self._represented:
            record = self._further(ds, location, pixels, where)
        elif pixels is not None:
            return Rejected(key, location, *pixels, _header(ds))
        else:
            record = series_record(ds, location, **where)
            if type(record) is SourceEvent:
                owners = (_text(ds, "PatientID"), _text(ds, "StudyInstanceUID"))
                self._represented[series] = (location, *owners, record.start)
        if type(record) is SourceEvent and uid:
            self._instances[uid] = location
        return record

    def _further(
        self,
        ds: pydicom.Dataset,
        location: str,
        pixels: tuple[str, str] | None,
        where: dict[str, str],
    ) -> SourceRecord:
        """The record of a later instance of a series already read, linked to that series."""
        series, key = _text(ds, "SeriesInstanceUID"), _instance_key(ds)
        first, patient, study, taken = self._represented[series]
        for tag, owner in (("PatientID", patient), ("StudyInstanceUID", study)):
            if owner != _text(ds, tag):
                message = (
                    f"series {series} belongs to {_OWNER[tag]} {owner!r} in {first}, "
                    f"but this instance names {_text(ds, tag)!r}"
                )
                return Rejected(key, location, "dicom.series_conflict", message, _header(ds))
        if key is None:
            message = "the header lacks SOPInstanceUID"
            return Rejected(None, location, "dicom.tag_missing", message, _header(ds))
        if pixels is not None:
            return Rejected(key, location, *pixels, _header(ds))
        uid = _text(ds, "SOPInstanceUID")
        if "wadors_uri" in where:
            where = {"wadors_uri": f"{where['wadors_uri']}/instances/{uid}"}
        return SourceEvent(
            key=key,
            person_key=f"{MRN_PREFIX}{patient}",
            system=MODALITY_SYSTEM,
            code=_text(ds, "Modality"),
            start=taken,
            default_table="image_instance",
            location=location,
            raw=_header(ds, InstanceNumber=_text(ds, "InstanceNumber"), **where),
            detail={
                "series_uid": series,
                "sop_instance_uid": uid,
                "sop_class_uid": sop_class_uid(ds),
                "instance_number": _text(ds, "InstanceNumber"),
                **where,
            },
        )


def _read(path: Path) -> tuple[pydicom.Dataset, int] | Rejected:
    """The header of one file and the file's size (inflated, when gzip-compressed), or why
    it is not a readable DICOM file.

    A file without the DICOM preamble (older ACR-NEMA-style writers) is read anyway
    when it then names a SOP Class, as a real instance does.
    """
    try:
        with path.open("rb") as handle:
            head = handle.read(_HEAD)
    except OSError as exc:
        return Rejected(None, str(path), "dicom.unreadable", _open_problem(path, exc), b"")
    if not head:
        return Rejected(None, str(path), "dicom.unreadable", "an empty file (0 bytes)", b"")
    packed = head.startswith(_GZIP_MAGIC)
    try:
        return _parse(path, packed)
    except InvalidDicomError:
        reason = "not a DICOM file (no DICOM preamble, and no SOP Class UID without one)"
        try:
            forced, size = _parse(path, packed, force=True)
            if _text(forced, "SOPClassUID"):
                return forced, size
        except Exception as exc:  # a non-DICOM file read by force fails in any way
            reason += f": {type(exc).__name__}"
    except Exception as exc:  # truncated or corrupt files raise from deep inside pydicom
        reason = f"unreadable DICOM file: {type(exc).__name__}: {exc}"
    if packed:
        reason = f"gzip-compressed: {reason}"
    return Rejected(None, str(path), "dicom.unreadable", reason, head)


def _parse(path: Path, packed: bool, force: bool = False) -> tuple[pydicom.Dataset, int]:
    """The header of a file, gzip-compressed when `packed`, and the file's (inflated) size."""
    with gzip.open(path, "rb") if packed else path.open("rb") as stream:
        ds = pydicom.dcmread(stream, defer_size=_DEFER, force=force)
        if not packed:
            return ds, path.stat().st_size
        size = stream.tell()
        while chunk := stream.read(1 << 20):
            size += len(chunk)
        return ds, size


def read_dataset(path: str | Path) -> pydicom.Dataset:
    """A whole DICOM file, pixels included, gzip-compressed or not."""
    with Path(path).open("rb") as handle:
        packed = handle.read(2) == _GZIP_MAGIC
    if not packed:
        return pydicom.dcmread(path)
    with gzip.open(path, "rb") as stream:
        return pydicom.dcmread(stream)


def _open_problem(path: Path, exc: OSError) -> str:
    """Why a file cannot be opened or read, in one line."""
    if path.is_symlink() and not path.exists():
        return f"a broken symbolic link to {os.readlink(path)}"
    return f"the file cannot be read: {exc.strerror or type(exc).__name__}"


def _pixel_problem(ds: pydicom.Dataset, size: int) -> tuple[str, str] | None:
    """(rule, message) when a file has no pixel data, or less than its header declares."""
    element = next((ds._dict[tag] for tag in _PIXELS if tag in ds._dict), None)
    if element is None:
        return "dicom.pixel_data_missing", "the file holds no pixel data"
    meta = getattr(ds, "file_meta", None)
    if meta is not None and meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian:
        return None  # offsets count inflated bytes; a cut deflated stream does not read at all
    length, start = getattr(element, "length", 0), getattr(element, "value_tell", None)
    if start is not None and length != _UNDEFINED_LENGTH and start + length > size:
        message = f"the pixel data is cut short: {size - start} of {length} bytes"
        return "dicom.pixel_data_truncated", message
    return None


def read_file(path: Path, account: SeriesAccount | None = None) -> SourceRecord:
    """The record of one DICOM file (see `SeriesAccount`), or why it was rejected."""
    read = _read(path)
    if isinstance(read, Rejected):
        return read
    ds, size = read
    account = account or SeriesAccount()
    pixels = _pixel_problem(ds, size)
    return account.instance(ds, str(path), pixels, local_path=str(path.resolve()))


def series_record(ds: pydicom.Dataset, location: str, **where: str) -> SourceRecord:
    """The image record of one series from its identifying attributes, or why it was rejected.

    `where` says where the pixels are: `local_path` (a file) or `wadors_uri` (a PACS).
    The date is StudyDate, else SeriesDate, AcquisitionDate or ContentDate, with a
    warning (`dicom.study_date_missing` or `dicom.study_date_invalid`).
    """
    raw = _header(ds, **where)
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
        replaces=_instance_key(ds),
    )


def read_path(path: Path) -> Iterator[SourceRecord]:
    """Every file under `path` (a file or a folder, searched recursively), in name order."""
    account = SeriesAccount()
    for file in _files(path):
        yield file if isinstance(file, Unread) else read_file(file, account)
