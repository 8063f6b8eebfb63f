"""Tabular sources read through one declarative YAML mapping: CSV, Parquet, or SQL queries.

A mapping names, for the person table and for each table of coded facts, where
rows come from (`file:` a CSV or Parquet file, or `query:` SQL run on `--url`),
which columns hold the identity, dates, code, value and unit, how local values
translate (`values:`), how values in other units convert (`unit: {convert: ...}`),
and how local code systems map to standard codes (`local_codes:`).
docs/site-setup.md documents it; `flip synth site --format csv` writes a complete example.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson
import yaml
from sqlalchemy import Engine, text

from flip.data.sources.records import (
    BlockEvent,
    EventBlock,
    Rejected,
    SourcePerson,
    SourceRecord,
)

#: Events per EventBlock a table's reader yields.
BLOCK_SIZE = 20000

Row = dict[str, Any]


class MappingError(ValueError):
    """The mapping file itself is wrong."""


class SourceReadError(RuntimeError):
    """A source stopped part-way; the message names the last record read."""


@dataclass(frozen=True)
class UnitSpec:
    """Where a table's unit comes from, its local spellings, and conversions to the stored unit.

    `conversions` maps (local code or None for any code, unit) to (unit, factor, offset):
    a value in that unit is stored as value * factor + offset in the new unit.
    """

    column: str | None
    fixed: str | None
    spellings: dict[str, str]
    conversions: dict[tuple[str | None, str], tuple[str, float, float]]

    @classmethod
    def parse(cls, spec: str | dict[str, Any], where: str) -> UnitSpec:
        """Read a mapping's `unit:` entry: a column name, or a mapping with column/value."""
        if isinstance(spec, str):
            return cls(spec, None, {}, {})
        if not isinstance(spec, dict) or ("column" in spec) == ("value" in spec):
            raise MappingError(
                f"{where}: 'unit' needs a column name, or exactly one of 'column' or 'value'"
            )
        conversions: dict[tuple[str | None, str], tuple[str, float, float]] = {}
        for rule in spec.get("convert") or []:
            try:
                target = (str(rule["to"]), float(rule["factor"]), float(rule.get("offset", 0)))
                source = str(rule["from"])
            except (KeyError, TypeError, ValueError) as exc:
                raise MappingError(
                    f"{where}: each unit conversion needs 'from', 'to' and a numeric 'factor' "
                    f"(and may give 'offset' and 'code'): {rule!r}"
                ) from exc
            code = rule.get("code")
            conversions[(None if code is None else str(code), source)] = target
        spellings = {str(k): str(v) for k, v in (spec.get("values") or {}).items()}
        return cls(spec.get("column"), spec.get("value"), spellings, conversions)

    def read(self, row: Row, code: str, value: float | None) -> tuple[float | None, str | None]:
        """(value, unit) of a row after spelling fixes and any conversion for its code."""
        unit = self.fixed if self.column is None else (_text(row.get(self.column)) or None)
        if unit is None:
            return value, None
        unit = self.spellings.get(unit, unit)
        rule = self.conversions.get((code, unit)) or self.conversions.get((None, unit))
        if rule is None:
            return value, unit
        target, factor, offset = rule
        return (None if value is None else value * factor + offset), target


@dataclass(frozen=True)
class TableMapping:
    """A parsed mapping file: how a source's rows become persons and events."""

    source: str
    person: dict[str, Any]
    events: list[dict[str, Any]]
    local_codes: dict[tuple[str, str], tuple[str, str]]

    @classmethod
    def load(cls, path: Path) -> TableMapping:
        """Read and check a mapping YAML file."""
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise MappingError(f"{path}: cannot read mapping: {exc}") from exc
        if not isinstance(doc, dict) or "person" not in doc:
            raise MappingError(f"{path}: a mapping needs a 'person' section")
        for spec in [doc["person"], *(doc.get("events") or [])]:
            if ("file" in spec) == ("query" in spec):
                raise MappingError(f"{path}: each table needs exactly one of 'file' or 'query'")
            where = f"{path}: {spec.get('name') or spec.get('file') or 'query'}"
            code = spec.get("code")
            if code is not None and (
                not isinstance(code, dict) or ("column" in code) == bool(code.get("value"))
            ):
                raise MappingError(f"{where}: 'code' needs exactly one of 'column' or 'value'")
            if spec.get("unit") is not None:
                spec["unit"] = UnitSpec.parse(spec["unit"], where)
        local: dict[tuple[str, str], tuple[str, str]] = {}
        for system, codes in (doc.get("local_codes") or {}).items():
            for code, target in codes.items():
                local[(system, str(code))] = (target["system"], str(target["code"]))
        return cls(
            doc.get("source", path.parent.name), doc["person"], doc.get("events") or [], local
        )


@lru_cache(maxsize=65536)
def _parse_date(value: str, fmt: str) -> date:
    return datetime.strptime(value.strip(), fmt).date()


def _date(value: Any, fmt: str) -> date:
    if type(value) is str:
        if not value or value.isspace():
            raise ValueError("the date is empty")
        return _parse_date(value, fmt)
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if value is None:
        raise ValueError("the date is empty")
    return _date(str(value), fmt)


def _text(value: Any) -> str:
    if type(value) is str:
        return value.strip()
    return "" if value is None else str(value).strip()


def csv_rows(path: Path) -> Iterator[tuple[str, Row | None, bytes]]:
    """(location, row, raw) per CSV line; a line that is not UTF-8 comes back with row None."""
    undecodable: list[bytes] = []
    current: list[bytes] = [b""]

    def lines(handle) -> Iterator[str]:
        for raw in handle:
            current[0] = raw
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError:
                undecodable.append(raw)
                yield "\n"

    where = str(path)
    with path.open("rb") as handle:
        header = next(csv.reader([handle.readline().decode("utf-8-sig")]))
        reader = csv.reader(lines(handle))
        for values in reader:
            if undecodable:
                yield f"{where}:{reader.line_num + 1}", None, undecodable.pop()
                continue
            if values:
                row = dict(zip(header, values, strict=False))
                yield f"{where}:{reader.line_num + 1}", row, current[0]


def parquet_rows(path: Path) -> Iterator[tuple[str, Row, bytes]]:
    """(location, row, raw) per Parquet row, batch by batch."""
    import pyarrow.parquet as pq

    number = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=10000):
        for row in batch.to_pylist():
            number += 1
            yield f"{path}#row{number}", row, orjson.dumps(row, default=str)


def sql_rows(engine: Engine, query: str, name: str) -> Iterator[tuple[str, Row, bytes]]:
    """(location, row, raw) per row of a query, streamed from a server-side cursor."""
    where = engine.url.render_as_string(hide_password=True)
    number = 0
    try:
        with engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=5000).execute(
                text(query)
            )
            for row in result.mappings():
                number += 1
                values = dict(row)
                yield f"{where}#{name}:{number}", values, orjson.dumps(values, default=str)
    except Exception as exc:
        last = f"after row {number}" if number else "before the first row"
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SourceReadError(f"{where}#{name}: the source stopped {last}: {first_line}") from exc


def _undecodable(location: str, raw: bytes) -> Rejected:
    return Rejected(None, location, "tabular.encoding", "line is not valid UTF-8", raw)


def _person(spec: dict[str, Any], row: Row, location: str, raw: bytes) -> SourceRecord:
    key = _text(row.get(spec["id"]))
    if not key:
        return Rejected(
            None, location, "tabular.person.id_missing", f"column {spec['id']} is empty", raw
        )
    birth = spec["birth_date"]
    try:
        born = _date(row.get(birth["column"]), birth.get("format", "%Y-%m-%d"))
    except ValueError as exc:
        return Rejected(key, location, "tabular.date.invalid", f"birth date: {exc}", raw)
    gender_spec = spec.get("gender")
    gender = None
    if gender_spec:
        value = _text(row.get(gender_spec["column"]))
        gender = gender_spec.get("values", {}).get(value, value.lower() or None)
    return SourcePerson(f"person/{key}", key, born, gender, location, raw)


@dataclass(frozen=True)
class _EventReader:
    """One mapped table of coded facts, its mapping entries resolved once for every row."""

    name: str
    id: str
    person: str
    system: str
    code_column: str | None
    code_value: str
    code_values: dict[str, Any]
    date_column: str
    date_format: str
    value: str | None
    unit: UnitSpec | None
    text: str | None
    default_table: str

    @classmethod
    def of(cls, spec: dict[str, Any]) -> _EventReader:
        """Resolve a table's mapping entries."""
        code = spec["code"]
        return cls(
            name=str(spec.get("name") or spec.get("file")),
            id=spec["id"],
            person=spec["person"],
            system=code["system"],
            code_column=code.get("column"),
            code_value=str(code.get("value", "")),
            code_values=code.get("values") or {},
            date_column=spec["date"]["column"],
            date_format=spec["date"].get("format", "%Y-%m-%d"),
            value=spec.get("value"),
            unit=spec.get("unit"),
            text=spec.get("text"),
            default_table=spec.get("default_table", "observation"),
        )

    def event(self, row: Row, location: str, raw: bytes) -> BlockEvent | Rejected:
        """The event of one row, or why it was rejected."""
        key = _text(row.get(self.id))
        if not key:
            message = f"column {self.id} is empty"
            return Rejected(None, location, "tabular.event.id_missing", message, raw)
        if self.code_column is None:
            code = self.code_value
        else:
            code = _text(row.get(self.code_column))
            code = str(self.code_values.get(code, code))
            if not code:
                message = f"column {self.code_column} is empty"
                return Rejected(key, location, "tabular.code.missing", message, raw)
        try:
            when = _date(row.get(self.date_column), self.date_format)
        except ValueError as exc:
            return Rejected(key, location, "tabular.date.invalid", str(exc), raw)
        value = None
        given = None if self.value is None else row.get(self.value)
        if given is not None and given != "":
            try:
                value = float(given)
            except (TypeError, ValueError):
                if _text(given):
                    message = f"value {given!r}"
                    return Rejected(key, location, "tabular.value.not_numeric", message, raw)
        unit = None
        if self.unit is not None:
            value, unit = self.unit.read(row, code, value)
        text = (_text(row.get(self.text)) or None) if self.text else None
        if self.default_table == "note" and text is None:
            message = f"column {self.text} is empty: a note needs its text"
            return Rejected(key, location, "tabular.note.no_text", message, raw)
        person_key = f"person/{_text(row.get(self.person))}"
        return BlockEvent(
            f"{self.name}/{key}", person_key, code, when, value, unit, text, location, raw
        )

    def read(self, rows: Iterator[tuple[str, Row | None, bytes]]) -> Iterator[SourceRecord]:
        """Blocks of this table's events, and a Rejected record for each row that failed."""
        block: list[BlockEvent] = []
        for location, row, raw in rows:
            if row is None:
                yield _undecodable(location, raw)
                continue
            got = self.event(row, location, raw)
            if type(got) is Rejected:
                yield got
                continue
            block.append(got)
            if len(block) == BLOCK_SIZE:
                yield EventBlock(self.system, self.default_table, block)
                block = []
        if block:
            yield EventBlock(self.system, self.default_table, block)


def _source_rows(spec: dict[str, Any], folder: Path | None, engine: Engine | None):
    if "query" in spec:
        if engine is None:
            raise MappingError("the mapping has SQL queries: give the database with --url")
        return sql_rows(engine, spec["query"], spec.get("name", "query"))
    path = (folder or Path(".")) / spec["file"]
    if not path.exists():
        raise MappingError(f"{path}: the mapping names this file but it does not exist")
    return parquet_rows(path) if path.suffix == ".parquet" else csv_rows(path)


def read_tables(
    mapping: TableMapping, folder: Path | None = None, engine: Engine | None = None
) -> Iterator[SourceRecord]:
    """Yield persons first, then blocks of events, from every file or query the mapping names."""
    for location, row, raw in _source_rows(mapping.person, folder, engine):
        if row is None:
            yield _undecodable(location, raw)
            continue
        yield _person(mapping.person, row, location, raw)
    for spec in mapping.events:
        yield from _EventReader.of(spec).read(_source_rows(spec, folder, engine))
