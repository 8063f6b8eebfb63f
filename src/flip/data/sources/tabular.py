"""CSV extracts read through a declarative YAML mapping (see docs/csv-mapping.md)."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from flip.data.sources.records import Rejected, SourceEvent, SourcePerson, SourceRecord


class MappingError(ValueError):
    """The mapping file itself is wrong."""


@dataclass(frozen=True)
class CsvMapping:
    """A parsed mapping file: how an extract's columns become persons and events."""

    source: str
    person: dict[str, Any]
    events: list[dict[str, Any]]
    local_codes: dict[tuple[str, str], tuple[str, str]]

    @classmethod
    def load(cls, path: Path) -> CsvMapping:
        """Read and check a mapping YAML file."""
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise MappingError(f"{path}: cannot read mapping: {exc}") from exc
        if not isinstance(doc, dict) or "person" not in doc:
            raise MappingError(f"{path}: a mapping needs a 'person' section")
        local: dict[tuple[str, str], tuple[str, str]] = {}
        for system, codes in (doc.get("local_codes") or {}).items():
            for code, target in codes.items():
                local[(system, str(code))] = (target["system"], str(target["code"]))
        return cls(
            doc.get("source", path.parent.name), doc["person"], doc.get("events") or [], local
        )


@lru_cache(maxsize=65536)
def _date(value: str, fmt: str) -> date:
    return datetime.strptime(value.strip(), fmt).date()


def _rows(path: Path) -> Iterator[tuple[int, dict[str, str], bytes]]:
    """Yield (line, row, raw bytes); a row that is not UTF-8 comes back with an empty dict."""
    with path.open("rb") as handle:
        header_line = handle.readline()
        header = next(csv.reader([header_line.decode("utf-8-sig")]))
        for number, raw in enumerate(handle, start=2):
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                yield number, {}, raw
                continue
            values = next(csv.reader([text]))
            yield number, dict(zip(header, values, strict=False)), raw


def _person(spec: dict[str, Any], row: dict[str, str], location: str, raw: bytes) -> SourceRecord:
    key = row.get(spec["id"], "").strip()
    if not key:
        return Rejected(
            None, location, "csv.person.id_missing", f"column {spec['id']} is empty", raw
        )
    birth = spec["birth_date"]
    try:
        born = _date(row[birth["column"]], birth["format"])
    except (KeyError, ValueError) as exc:
        return Rejected(key, location, "csv.date.invalid", f"birth date: {exc}", raw)
    gender_spec = spec.get("gender")
    gender = None
    if gender_spec:
        gender = gender_spec.get("values", {}).get(row.get(gender_spec["column"], ""), None)
    return SourcePerson(f"person/{key}", key, born, gender, location, raw)


def _event(spec: dict[str, Any], row: dict[str, str], location: str, raw: bytes) -> SourceRecord:
    key = row.get(spec["id"], "").strip()
    if not key:
        return Rejected(
            None, location, "csv.event.id_missing", f"column {spec['id']} is empty", raw
        )
    code = row.get(spec["code"]["column"], "").strip()
    if not code:
        return Rejected(
            key, location, "csv.code.missing", f"column {spec['code']['column']} is empty", raw
        )
    try:
        when = _date(row[spec["date"]["column"]], spec["date"]["format"])
    except (KeyError, ValueError) as exc:
        return Rejected(key, location, "csv.date.invalid", str(exc), raw)
    value = None
    if spec.get("value") and row.get(spec["value"], "").strip():
        try:
            value = float(row[spec["value"]])
        except ValueError:
            return Rejected(
                key, location, "csv.value.not_numeric", f"value {row[spec['value']]!r}", raw
            )
    return SourceEvent(
        key=f"{spec['file']}/{key}",
        person_key=f"person/{row.get(spec['person'], '').strip()}",
        system=spec["code"]["system"],
        code=code,
        start=when,
        default_table=spec.get("default_table", "observation"),
        location=location,
        raw=raw,
        value=value,
        unit=(row.get(spec["unit"]) or None) if spec.get("unit") else None,
    )


def read_extract(folder: Path, mapping: CsvMapping) -> Iterator[SourceRecord]:
    """Yield persons first, then events, from the CSV files a mapping names."""
    plan = [(mapping.person, _person)] + [(spec, _event) for spec in mapping.events]
    for spec, convert in plan:
        path = folder / spec["file"]
        if not path.exists():
            raise MappingError(f"{path}: the mapping names this file but it does not exist")
        for number, row, raw in _rows(path):
            location = f"{path}:{number}"
            if not row:
                yield Rejected(None, location, "csv.encoding", "line is not valid UTF-8", raw)
                continue
            yield convert(spec, row, location, raw)
