"""Tabular sources read through one declarative YAML mapping: CSV, Parquet, or SQL queries.

A mapping names, for the person table and for each table of coded facts, where
rows come from (`file:` a CSV or Parquet file, or `query:` SQL run on `--url`),
which columns hold the identity, dates, code, value and unit, how local values
translate (`values:`), how values in other units convert (`unit: {convert: ...}`),
and how local code systems map to standard codes (`local_codes:`); see
tabular_mapping. Several entries may read one file: each row then gives one record
per entry, keyed by the entry's identity and the row's id (`vitals.csv:8480-6/17`),
and the file is read once. docs/site-setup.md documents it; `flip synth site
--format csv` writes a complete example.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any, NamedTuple

import orjson
from sqlalchemy import Engine, text

from flip.data.sources.identity import TOO_LONG, PersonIdentity
from flip.data.sources.records import (
    BlockEvent,
    EventBlock,
    Rejected,
    Skipped,
    SourceEvent,
    SourcePerson,
    SourceRecord,
)
from flip.data.sources.tabular_dates import as_date, at_age, kept_year, parse_date
from flip.data.sources.tabular_mapping import (
    CsvFormat,
    EventSpec,
    MappingError,
    PersonSpec,
    TableMapping,
    UnitSpec,
)
from flip.data.sources.textfile import TextLines
from flip.data.sources.values import compared
from flip.data.terminology.units import Harmonised

__all__ = [
    "BLOCK_SIZE",
    "MappingError",
    "SourceReadError",
    "TableMapping",
    "csv_rows",
    "parquet_rows",
    "read_tables",
    "sql_rows",
]

#: Events per EventBlock a table's reader yields.
BLOCK_SIZE = 20000

Row = dict[str, Any]


class Unreadable(NamedTuple):
    """Why a source line could not be read as a row: its quarantine rule and message."""

    rule: str
    message: str


Rows = Iterator[tuple[str, Row | Unreadable, bytes, tuple[str, ...]]]

#: The warning of a CSV row that held bytes not in its encoding (read as Windows-1252).
TEXT_NOT_UTF8 = "tabular.text_not_utf8"

#: The quarantine rule of a line longer than textfile.MAX_LINE (read past, not into memory).
LINE_TOO_LONG = "tabular.line_too_long"


def _misaligned(cells: int, width: int) -> Unreadable:
    return Unreadable(
        "tabular.row.misaligned",
        f"has {cells} cells where the header has {width} columns (an unquoted delimiter, "
        "or a cut-off line?)",
    )


class SourceReadError(RuntimeError):
    """A source stopped part-way; the message names the last record read."""


def _cell(row: Row, column: str | None, nulls: frozenset[str]) -> str:
    """A cell as stripped text; "" when it is empty, missing or one of `nulls`."""
    if column is None:
        return ""
    value = row.get(column)
    if type(value) is not str:
        if value is None:
            return ""
        value = str(value)
    value = value.strip()
    return "" if value in nulls else value


def _raw_cell(row: Row, column: str, nulls: frozenset[str]) -> Any:
    """A cell as the source typed it (text stripped); None when it is empty or a null."""
    value = row.get(column)
    if type(value) is str:
        value = value.strip()
        return None if value in nulls else value
    return value


def csv_rows(path: Path, fmt: CsvFormat = CsvFormat()) -> Rows:
    """(location, row, raw, warnings) per CSV record written as `fmt` says, its text decoded
    as `textfile` says (the location names its first line, raw holds all its lines); a row
    that held bytes not in its encoding has the warning `tabular.text_not_utf8`; a record
    whose cells do not line up with the header's columns comes back as `Unreadable` (empty
    trailing cells are no misalignment)."""
    pending: list[bytes] = []
    text = TextLines(path, None if fmt.encoding == "utf-8" else fmt.encoding, skip_too_long=True)

    def lines() -> Iterator[str]:
        for raw, line in text.raw_lines():
            pending.append(raw)
            yield line

    where = str(path)
    source = lines()
    header = next(csv.reader([next(source, "")], delimiter=fmt.delimiter), [])
    width = len(header)
    reader = csv.reader(source, delimiter=fmt.delimiter)
    first = 2
    pending.clear()
    legacy = 0
    for values in reader:
        raw = pending[0] if len(pending) == 1 else b"".join(pending)
        pending.clear()
        location = f"{where}:{first}"
        first = reader.line_num + 2
        notes: tuple[str, ...] = ()
        if text.legacy != legacy:
            legacy = text.legacy
            notes = (TEXT_NOT_UTF8,)
        for error in text.take_too_long():
            yield f"{where}:{error.number}", Unreadable(LINE_TOO_LONG, str(error)), b"", ()
        if len(values) == width or (len(values) > width and not "".join(values[width:]).strip()):
            yield location, dict(zip(header, values, strict=False)), raw, notes
        elif values:
            yield location, _misaligned(len(values), width), raw, notes


def parquet_rows(path: Path) -> Rows:
    """(location, row, raw, no warnings) per Parquet row, batch by batch."""
    import pyarrow.parquet as pq

    number = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=10000):
        for row in batch.to_pylist():
            number += 1
            yield f"{path}#row{number}", row, orjson.dumps(row, default=str), ()


def sql_rows(engine: Engine, query: str, name: str) -> Rows:
    """(location, row, raw, no warnings) per row of a query, streamed from a server-side cursor."""
    where = engine.url.render_as_string(hide_password=True)
    number = 0
    try:
        with engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=5000).execute(
                text(query)
            )
            names = list(result.keys())
            twice = sorted({n for n in names if names.count(n) > 1})
            if twice:
                raise ValueError(f"it names column {twice[0]!r} more than once: alias all but one")
            for row in result.mappings():
                number += 1
                values = dict(row)
                yield f"{where}#{name}:{number}", values, orjson.dumps(values, default=str), ()
    except Exception as exc:
        last = f"after row {number}" if number else "before the first row"
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SourceReadError(f"{where}#{name}: the source stopped {last}: {first_line}") from exc


def _unreadable(key: str | None, location: str, why: Unreadable, raw: bytes) -> Rejected:
    return Rejected(key, location, why.rule, why.message, raw)


def _when(row: Row, column: str, fmt: str | None, nulls: frozenset[str]) -> date:
    value = _raw_cell(row, column, nulls)
    if value is None:
        raise ValueError(f"column {column} is empty")
    return as_date(value, fmt)


class _PersonReader:
    """The person table: one SourcePerson per row, or why the row was rejected.

    With the site's person `identity` and an `identifier` column, a row whose identifier is
    filled is the person of that identifier; `aliases` then maps the row's own key (which
    the events name) to it."""

    def __init__(
        self,
        spec: PersonSpec,
        nulls: frozenset[str],
        decimal: str = ".",
        identity: PersonIdentity | None = None,
    ) -> None:
        self.spec = spec
        self.nulls = nulls
        self.comma = decimal == ","
        self.identity = identity if spec.identifier else None
        self.aliases: dict[str, str] = {}

    def read(
        self, row: Row, location: str, raw: bytes, notes: tuple[str, ...] = ()
    ) -> SourcePerson | Rejected:
        """The person of one row; `notes` are warnings the file reader has for it."""
        spec, nulls = self.spec, self.nulls
        source_value = _cell(row, spec.id, nulls)
        if not source_value:
            message = f"column {spec.id} is empty"
            return Rejected(None, location, "tabular.person.id_missing", message, raw)
        key = f"person/{source_value}"
        warnings: tuple[str, ...] = notes
        if self.identity is not None:
            assert spec.identifier is not None
            chosen = _cell(row, spec.identifier, nulls)
            identified = self.identity.key(chosen) if chosen else None
            if identified is not None:
                self.aliases[key], key, source_value = identified, identified, chosen
            elif chosen:
                warnings = (*warnings, f"tabular.{TOO_LONG}")
        birth, parts = spec.birth, 3
        try:
            if birth.age is not None:
                at = _when(row, birth.at, birth.format, nulls)
                born = at_age(at, -_age(row, birth.age, nulls, self.comma), birth.age_unit)
            else:
                born = birth.fixed or _when(row, birth.column, birth.format, nulls)
        except ValueError as exc:
            sent = _raw_cell(row, birth.column, nulls) if birth.age is None else None
            kept = kept_year(sent, birth.format) if isinstance(sent, str) else None
            if kept is None:
                return Rejected(key, location, "tabular.date.invalid", f"birth date: {exc}", raw)
            (born, parts), warnings = kept, (*warnings, "tabular.birth_date.truncated")
        gender = None
        if spec.gender:
            value = _cell(row, spec.gender, nulls)
            gender = spec.genders.get(value, value.lower() or None)
        died = None
        death = spec.death
        if death is not None:
            try:
                if death.fixed or _raw_cell(row, death.column, nulls) is not None:
                    died = death.fixed or _when(row, death.column, death.format, nulls)
            except ValueError:
                warnings = (*warnings, "tabular.death_date.invalid")
        return SourcePerson(
            key, source_value, born, gender, location, raw, died, warnings, birth_parts=parts
        )


class _EventReader:
    """One entry of `events:`, turning rows into its events, or saying why a row was rejected."""

    def __init__(
        self,
        spec: EventSpec,
        nulls: frozenset[str],
        births: dict[str, date] | None,
        decimal: str = ".",
        aliases: dict[str, str] | None = None,
        base: Path | None = None,
    ) -> None:
        self.spec = spec
        #: The folder an image path is relative to: the table's own.
        self.base = base or Path(".")
        self.aliases = aliases or {}
        self.comma = decimal == ","
        self.entry = spec.entry
        self.nulls = nulls
        self.births = births if births is not None else {}
        self.needs_value = spec.code_column is None and spec.value is not None
        # One object per distinct person key and code (a block pickles each once), codes by
        # their cell as read.
        self.person_keys: dict[str, str] = {}
        self.codes: dict[Any, str] = {}

    def event(
        self, row: Row, location: str, raw: bytes, notes: tuple[str, ...] = ()
    ) -> BlockEvent | SourceRecord:
        """The event of one row, or why it was rejected or skipped: an entry with one fixed
        code skips a row whose value cell is empty, as a code column with `empty: skip` does.

        Cells are read inline (not through `_cell`): this runs once per row and entry."""
        spec, nulls, get = self.spec, self.nulls, row.get
        cell = get(spec.id)
        row_key = cell.strip() if type(cell) is str else _cell(row, spec.id, nulls)
        if not row_key or row_key in nulls:
            message = f"column {spec.id} is empty"
            return Rejected(self.entry, location, "tabular.event.id_missing", message, raw)
        key = f"{self.entry}/{row_key}"
        value = None
        if spec.value is not None:
            value = _raw_cell(row, spec.value, nulls)
            if value is None and self.needs_value:
                message = f"column {spec.value} is empty: the row has no such fact"
                return Skipped(key, location, "tabular.value.empty", message)
        cell = get(spec.person)
        person = cell.strip() if type(cell) is str else _cell(row, spec.person, nulls)
        person_key = self.person_keys.get(person)
        if person_key is None:
            if not person or person in nulls:
                message = f"column {spec.person} is empty"
                return Rejected(key, location, "tabular.event.person_missing", message, raw)
            own = f"person/{person}"
            person_key = self.person_keys[person] = self.aliases.get(own, own)
        code = spec.code_value
        if spec.code_column is not None:
            code = self.codes.get(get(spec.code_column))
            if code is None:
                code = _cell(row, spec.code_column, nulls)
                code = spec.code_values.get(code, code)
                if not code:
                    message = f"column {spec.code_column} is empty"
                    if spec.skip_empty_code:
                        return Skipped(key, location, "tabular.code.empty", message)
                    return Rejected(key, location, "tabular.code.missing", message, raw)
                self.codes[get(spec.code_column)] = code
        when = spec.date
        try:
            if when.column is not None:
                cell = get(when.column)
                if type(cell) is str:
                    cell = cell.strip()
                    if cell in nulls:
                        raise ValueError(f"column {when.column} is empty")
                    start = parse_date(cell, when.format)
                elif cell is None:
                    raise ValueError(f"column {when.column} is empty")
                else:
                    start = as_date(cell, when.format)
            elif when.fixed is not None:
                start = when.fixed
            else:
                start = self._at_age(row, person_key)
        except ValueError as exc:
            return Rejected(key, location, "tabular.date.invalid", str(exc), raw)
        except LookupError as exc:
            return Rejected(key, location, "tabular.date.no_birth_date", str(exc), raw)
        operator = None
        warnings, nulled = notes, ()
        given = value
        if self.comma and type(value) is str:
            value = value.replace(",", ".")
        if value is not None:
            try:
                value = float(value)
                if value - value != 0:  # nan or infinite
                    raise ValueError
            except (TypeError, ValueError):
                value, operator, nulled = _number(value)
                warnings += nulled
        unit = unit_sent = value_sent = None
        if spec.unit is not None:
            value, unit, unit_sent = _unit(spec.unit, row, code, value, nulls)
        if given is not None and (unit_sent is not None or operator or nulled):
            value_sent = str(given)
        text = _cell(row, spec.text, nulls) or None if spec.text else None
        if text is None and spec.default_table == "note":
            message = f"column {spec.text} is empty: a note needs its text"
            return Rejected(key, location, "tabular.note.no_text", message, raw)
        if spec.image_path is not None:
            return self._image(row, key, row_key, person_key, code, start, location, raw, notes)
        if operator is None and not warnings:
            return BlockEvent(
                key,
                person_key,
                code,
                start,
                value,
                unit,
                text,
                location,
                raw,
                value_sent,
                unit_sent,
            )
        return SourceEvent(
            key,
            person_key,
            spec.system,
            code,
            start,
            spec.default_table,
            location,
            raw,
            value=value,
            unit=unit,
            text=text,
            operator=operator,
            warnings=warnings,
            value_sent=value_sent,
            unit_sent=unit_sent,
        )

    def _image(
        self,
        row: Row,
        key: str,
        row_key: str,
        person_key: str,
        code: str,
        start: date,
        location: str,
        raw: bytes,
        notes: tuple[str, ...],
    ) -> SourceRecord:
        """An image file's event (its pixels stay where they are), or why it was rejected."""
        spec = self.spec
        assert spec.image_path is not None
        given = _cell(row, spec.image_path, self.nulls)
        if not given:
            message = f"column {spec.image_path} is empty: an image needs its file"
            return Rejected(key, location, "tabular.image.path_missing", message, raw)
        path = self.base / given
        if not path.is_file():
            message = f"column {spec.image_path}: no image file at {path}"
            return Rejected(key, location, "tabular.image.file_missing", message, raw)
        study = _cell(row, spec.image_study, self.nulls) if spec.image_study else None
        return SourceEvent(
            key,
            person_key,
            spec.system,
            code,
            start,
            "image_occurrence",
            location,
            raw,
            warnings=notes,
            detail={
                "study_uid": study or row_key,
                "series_uid": row_key,
                "local_path": str(path.resolve()),
            },
        )

    def _at_age(self, row: Row, person_key: str) -> date:
        when = self.spec.date
        assert when.age is not None
        age = _age(row, when.age, self.nulls, self.comma)
        birth = self.births.get(person_key)
        if birth is None:
            raise LookupError(f"an age at the event needs the birth date of {person_key}")
        return at_age(birth, age, when.age_unit)


def _age(row: Row, column: str, nulls: frozenset[str], comma: bool = False) -> float:
    """The age in a cell (`comma`: a decimal comma); ValueError when it is empty, not a
    number, or negative."""
    given = _raw_cell(row, column, nulls)
    if given is None:
        raise ValueError(f"column {column} (an age) is empty")
    try:
        age = float(given.replace(",", ".") if comma and type(given) is str else given)
    except (TypeError, ValueError):
        raise ValueError(f"age {given!r} is not a number") from None
    if not math.isfinite(age) or age < 0:
        raise ValueError(f"age {given!r} is not a plausible age")
    return age


def _number(given: Any) -> tuple[float | None, str | None, tuple[str, ...]]:
    """(value, comparator, warnings) of a value cell; one that is not a number is nulled."""
    if given is None:
        return None, None, ()
    try:
        value = float(given)
    except (TypeError, ValueError):
        found = compared(str(given))
        if found is None:
            return None, None, ("tabular.value.not_numeric",)
        return found[1], found[0], ()
    if math.isfinite(value):
        return value, None, ()
    return None, None, ("tabular.value.not_numeric",)


def _unit(
    spec: UnitSpec, row: Row, code: str, value: float | None, nulls: frozenset[str]
) -> tuple[float | None, str | None, str | None]:
    """(value, unit, unit as sent when it differs) of a row after spelling fixes and any
    conversion for its code; a converted value is cut to 12 significant digits."""
    sent = spec.fixed if spec.column is None else (_cell(row, spec.column, nulls) or None)
    if sent is None:
        return value, None, None
    unit = spec.spellings.get(sent, sent)
    rule = spec.conversions.get((code, unit)) or spec.conversions.get((None, unit))
    if rule is not None:
        unit, factor, offset = rule
        if value is not None:
            value = Harmonised(unit, factor, offset, converted=True).apply(value)
    return value, unit, None if unit == sent else sent


def _read_events(readers: list[_EventReader], rows: Rows) -> Iterator[SourceRecord]:
    """Blocks of each entry's events from one file or query read once, and a record for
    each row an entry rejected or read with a comparator or a nulled field."""
    blocks: list[list[BlockEvent]] = [[] for _ in readers]
    pairs = list(enumerate(readers))
    for location, row, raw, notes in rows:
        if type(row) is Unreadable:
            for reader in readers:
                yield _unreadable(reader.entry, location, row, raw)
            continue
        for i, reader in pairs:
            got = reader.event(row, location, raw, notes)
            if type(got) is not BlockEvent:
                yield got
                continue
            block = blocks[i]
            block.append(got)
            if len(block) == BLOCK_SIZE:
                yield EventBlock(reader.spec.system, reader.spec.default_table, block)
                blocks[i] = []
    for reader, block in zip(readers, blocks, strict=True):
        if block:
            yield EventBlock(reader.spec.system, reader.spec.default_table, block)


def _source_rows(
    spec: PersonSpec | EventSpec, folder: Path | None, engine: Engine | None, fmt: CsvFormat
) -> Rows:
    if spec.query:
        if engine is None:
            raise MappingError("the mapping has SQL queries: give the database with --url")
        return sql_rows(engine, spec.origin, spec.label)
    path = (folder or Path(".")) / spec.origin
    return parquet_rows(path) if path.suffix == ".parquet" else csv_rows(path, fmt)


def read_tables(
    mapping: TableMapping,
    folder: Path | None = None,
    engine: Engine | None = None,
    identity: PersonIdentity | None = None,
) -> Iterator[SourceRecord]:
    """Yield persons first, then each file's or query's events (a file several entries
    read is read once); the mapping is checked against the files or queries first.
    `identity` is the site's person identifier, read from the person entry's `identifier`."""
    mapping = mapping.check(folder, engine)
    nulls = mapping.nulls
    births: dict[str, date] | None = None
    if any(e.date.age is not None for e in mapping.events):
        births = {}
    person = _PersonReader(mapping.person, nulls, mapping.csv.decimal, identity)
    for location, row, raw, notes in _source_rows(mapping.person, folder, engine, mapping.csv):
        if type(row) is Unreadable:
            yield _unreadable(None, location, row, raw)
            continue
        got = person.read(row, location, raw, notes)
        if births is not None and type(got) is SourcePerson:
            births[got.key] = got.birth_date
        yield got
    groups: dict[str, list[EventSpec]] = {}
    for spec in mapping.events:
        groups.setdefault(spec.origin, []).append(spec)
    for specs in groups.values():
        base = folder or Path(".")
        if not specs[0].query:
            base = (base / specs[0].origin).parent
        readers = [
            _EventReader(spec, nulls, births, mapping.csv.decimal, person.aliases, base)
            for spec in specs
        ]
        yield from _read_events(readers, _source_rows(specs[0], folder, engine, mapping.csv))
