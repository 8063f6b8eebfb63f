"""FHIR R4 files: Bundles (any type), single resources and NDJSON bulk exports.

Each resource is validated with fhir.resources (its R4B models read R4 data);
one that fails is yielded as `Rejected` with the reason and its raw bytes.
"""

from __future__ import annotations

import contextlib
import gzip
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path

import orjson
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from flip.data.sources.records import (
    Rejected,
    SourceEvent,
    SourcePerson,
    SourceRecord,
    SourceVisit,
)

#: Resource types read in dependency order, so references resolve within one pass of a folder.
SUPPORTED = ("Patient", "Encounter", "Condition", "Observation")


def _as_date(value: object) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str) and len(value) >= 10:
        return date.fromisoformat(value[:10])
    return None


class _References:
    """Resolves relative, absolute and urn:uuid references to record keys."""

    def __init__(self) -> None:
        self.full_urls: dict[str, str] = {}

    def key_of(self, resource: dict, full_url: str | None) -> str:
        key = f"{resource['resourceType']}/{resource['id']}" if resource.get("id") else full_url
        if key is None:
            raise ValueError("resource has neither id nor fullUrl")
        if full_url:
            self.full_urls[full_url] = key
        return key

    def resolve(self, reference: str | None) -> str | None:
        if not reference:
            return None
        if reference in self.full_urls:
            return self.full_urls[reference]
        if reference.startswith("urn:"):
            return reference
        parts = reference.rstrip("/").split("/")
        if len(parts) >= 2 and parts[-2] == "_history" and len(parts) >= 4:
            parts = parts[:-2]
        return "/".join(parts[-2:])


def _convert(resource: dict, raw: bytes, location: str, refs: _References, full_url: str | None):
    kind = resource.get("resourceType")
    key = refs.key_of(resource, full_url)
    if kind not in SUPPORTED:
        return Rejected(key, location, "fhir.unsupported_type", f"{kind} is not read yet", raw)
    model = get_fhir_model_class(kind).model_validate(resource)
    if kind == "Patient":
        identifier = model.identifier[0].value if model.identifier else key
        return SourcePerson(key, identifier, _as_date(model.birthDate), model.gender, location, raw)
    person_key = refs.resolve(model.subject.reference if model.subject else None)
    if person_key is None:
        return Rejected(key, location, "fhir.subject.missing", f"{kind} has no subject", raw)
    if kind == "Encounter":
        period = model.period
        start = _as_date(period.start) if period else None
        end = _as_date(period.end) if period and period.end else start
        return SourceVisit(key, person_key, start, end, model.class_fhir.code or "", location, raw)
    coding = model.code.coding[0] if model.code and model.code.coding else None
    if coding is None or not coding.code:
        return Rejected(key, location, "fhir.code.missing", f"{kind} has no coded value", raw)
    visit_key = refs.resolve(model.encounter.reference) if model.encounter else None
    if kind == "Condition":
        start = _as_date(model.onsetDateTime) or _as_date(model.recordedDate)
        return SourceEvent(
            key,
            person_key,
            coding.system or "",
            coding.code,
            start,
            "condition_occurrence",
            location,
            raw,
            visit_key=visit_key,
        )
    quantity = model.valueQuantity
    return SourceEvent(
        key,
        person_key,
        coding.system or "",
        coding.code,
        _as_date(model.effectiveDateTime) or _as_date(model.issued),
        "measurement" if quantity is not None else "observation",
        location,
        raw,
        value=float(quantity.value) if quantity and quantity.value is not None else None,
        unit=(quantity.code or quantity.unit) if quantity else None,
        visit_key=visit_key,
    )


def _record(resource: object, raw: bytes, location: str, refs: _References, full_url=None):
    if not isinstance(resource, dict) or "resourceType" not in resource:
        return Rejected(None, location, "fhir.not_a_resource", "no resourceType", raw)
    try:
        return _convert(resource, raw, location, refs, full_url)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        message = f"{resource['resourceType']}.{where}: {first['msg']}"
        return Rejected(resource.get("id"), location, "fhir.invalid", message, raw)
    except (ValueError, TypeError) as exc:
        return Rejected(resource.get("id"), location, "fhir.invalid", str(exc), raw)


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")


def read_ndjson(path: Path, refs: _References | None = None) -> Iterator[SourceRecord]:
    """Yield one record per line of an NDJSON file (plain or gzip), never reading it whole."""
    refs = refs or _References()
    with _open(path) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            location = f"{path}:{number}"
            try:
                resource = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                yield Rejected(None, location, "json.malformed", str(exc), line)
                continue
            yield _record(resource, line.rstrip(b"\n"), location, refs)


def read_json(path: Path, refs: _References | None = None) -> Iterator[SourceRecord]:
    """Yield the records of a JSON file holding a Bundle or a single resource."""
    refs = refs or _References()
    with _open(path) as handle:
        data = handle.read()
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        yield Rejected(None, str(path), "json.malformed", str(exc), data)
        return
    if not isinstance(document, dict) or document.get("resourceType") != "Bundle":
        yield _record(document, data, str(path), refs)
        return
    entries = [e for e in document.get("entry") or [] if isinstance(e, dict)]
    resources = []
    for index, entry in enumerate(entries):
        resource = entry.get("resource")
        location = f"{path}#entry[{index}]"
        raw = orjson.dumps(resource)
        if isinstance(resource, dict) and "resourceType" in resource:
            with contextlib.suppress(ValueError):
                refs.key_of(resource, entry.get("fullUrl"))
        resources.append((resource, raw, location, entry.get("fullUrl")))
    resources.sort(key=lambda r: _rank(r[0]))
    for resource, raw, location, full_url in resources:
        yield _record(resource, raw, location, refs, full_url)


def _rank(resource: object) -> int:
    kind = resource.get("resourceType") if isinstance(resource, dict) else None
    return SUPPORTED.index(kind) if kind in SUPPORTED else len(SUPPORTED)


def read_path(path: Path) -> Iterator[SourceRecord]:
    """Read a FHIR file or a folder of them; in a folder, Patients are read first."""
    refs = _References()
    files = sorted(path.iterdir()) if path.is_dir() else [path]
    files = [f for f in files if f.name.endswith((".json", ".ndjson", ".json.gz", ".ndjson.gz"))]
    files.sort(key=lambda f: (_file_rank(f), f.name))
    for file in files:
        reader = read_ndjson if ".ndjson" in file.name else read_json
        yield from reader(file, refs)


def _file_rank(path: Path) -> int:
    stem = path.name.split(".")[0]
    return SUPPORTED.index(stem) if stem in SUPPORTED else -1
