"""The YAML mapping of a tabular source, read and checked whole before anything is ingested.

Every mistake in a mapping (a missing or unknown key, a column the file does not have,
a value map that is not one, an unknown table, a bad date format, a unit conversion to
a unit the vocabulary does not know) is a `MappingError` whose one line names the
mapping file, the entry and the key.
"""

from __future__ import annotations

import codecs
import csv
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Engine, text

from flip.data.cdm.schema import DOMAIN_TABLES
from flip.data.sources.tabular_dates import AGE_UNITS, check_format, parse_date
from flip.data.sources.textfile import first_line, sniff_delimiter

#: Tables a mapped event may name as its `default_table` (image_occurrence: with `image`).
EVENT_TABLES = frozenset([*DOMAIN_TABLES.values(), "note", "image_occurrence"])
#: Cell values read as "no value" besides empty ones, unless the mapping's `nulls:` says otherwise.
DEFAULT_NULLS = ("NULL", "null", "\\N")

_TOP_KEYS = {"source", "person", "events", "local_codes", "nulls", "csv"}
_PERSON_KEYS = {
    "file",
    "query",
    "name",
    "id",
    "identifier",
    "birth_date",
    "gender",
    "death_date",
}
_EVENT_KEYS = {
    "file",
    "query",
    "name",
    "id",
    "person",
    "code",
    "date",
    "value",
    "unit",
    "text",
    "image",
    "default_table",
}
_CONVERT_KEYS = {"from", "to", "factor", "offset", "code"}


class MappingError(ValueError):
    """The mapping file itself is wrong: the message names the file, the entry and the key."""


def _reason(exc: Exception) -> str:
    """One line saying why a mapping file could not be read (YAML's problem and where)."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem:
        mark = exc.problem_mark
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        return f"{exc.problem}{at}"
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class _Where:
    """Builds the one-line errors of one mapping entry."""

    def __init__(self, path: Path, entry: str) -> None:
        self.path = path
        self.entry = entry

    def error(self, key: str, problem: str) -> MappingError:
        return MappingError(f"{self.path}: {self.entry}: '{key}': {problem}")


def _mapping_of(value: Any, where: _Where, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise where.error(key, f"must be a mapping, not {type(value).__name__} {value!r}")
    return value


def _known(spec: dict[str, Any], allowed: set[str], where: _Where, prefix: str = "") -> None:
    unknown = sorted(str(k) for k in spec if k not in allowed)
    if unknown:
        raise where.error(
            prefix + unknown[0], f"unknown key (expected one of {', '.join(sorted(allowed))})"
        )


def _required(spec: dict[str, Any], key: str, where: _Where, prefix: str = "") -> Any:
    if spec.get(key) in (None, ""):
        raise where.error(prefix + key, "is missing")
    return spec[key]


def _column_name(value: Any, where: _Where, key: str) -> str:
    if not isinstance(value, str | int) or isinstance(value, bool) or str(value).strip() == "":
        raise where.error(key, f"must name a column, not {value!r}")
    return str(value)


def _value_map(value: Any, where: _Where, key: str) -> dict[str, str]:
    if value is None:
        return {}
    mapping = _mapping_of(value, where, key)
    for k, v in mapping.items():
        if isinstance(v, dict | list) or v is None or isinstance(k, dict | list):
            raise where.error(key, f"maps {k!r} to {v!r}: a value map maps text to text")
    return {str(k): str(v) for k, v in mapping.items()}


def _renamed(column: str | None, names: dict[str, str]) -> str | None:
    return None if column is None else names.get(column, column)


@dataclass(frozen=True)
class CsvFormat:
    """How the mapping's CSV files are written: the delimiter between cells, the text
    encoding, and the decimal mark of numeric values (Excel in much of Europe: `;`,
    `cp1252` and `,`)."""

    delimiter: str = ","
    encoding: str = "utf-8"
    decimal: str = "."

    @classmethod
    def parse(cls, spec: Any, where: _Where) -> CsvFormat:
        """Read the mapping's `csv:` (absent: comma, UTF-8, decimal point)."""
        if spec is None:
            return cls()
        spec = _mapping_of(spec, where, "csv")
        _known(spec, {"delimiter", "encoding", "decimal"}, where, "csv.")
        delimiter = spec.get("delimiter", ",")
        if delimiter == "\\t":
            delimiter = "\t"
        if not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in '"\r\n':
            raise where.error("csv.delimiter", f"must be one character, not {delimiter!r}")
        encoding = spec.get("encoding", "utf-8")
        try:
            if not isinstance(encoding, str):
                raise LookupError
            encoding = codecs.lookup(encoding).name
        except LookupError:
            raise where.error("csv.encoding", f"{encoding!r} is not a text encoding") from None
        decimal = spec.get("decimal", ".")
        if decimal not in (".", ","):
            raise where.error("csv.decimal", f"must be '.' or ',', not {decimal!r}")
        if decimal == delimiter:
            raise where.error("csv.decimal", "cannot be the delimiter as well")
        return cls(delimiter, encoding, decimal)


@dataclass(frozen=True)
class DateSpec:
    """Where a date comes from: a column (with an optional strptime format), a fixed value,
    or an age in `age_unit`: for an event, its age at the event counted from the person's
    birth; for a birth date, the age at the date in column `at` counted back."""

    column: str | None = None
    format: str | None = None
    fixed: date | None = None
    age: str | None = None
    age_unit: str = "years"
    at: str | None = None

    @classmethod
    def parse(cls, spec: Any, where: _Where, key: str, *, kind: str) -> DateSpec:
        """Read a `date:` (kind "event"), `birth_date:` ("birth") or `death_date:` ("death")."""
        if isinstance(spec, str):
            return cls(column=spec)
        spec = _mapping_of(spec, where, key)
        allowed = {"column", "format", "value"}
        allowed |= {"event": {"age", "unit"}, "birth": {"age", "unit", "at"}}.get(kind, set())
        _known(spec, allowed, where, f"{key}.")
        sources = [k for k in ("column", "value", "age") if spec.get(k) not in (None, "")]
        if len(sources) != 1:
            expected = "'column', 'value' or 'age'" if "age" in allowed else "'column' or 'value'"
            raise where.error(key, f"needs exactly one of {expected}")
        fmt = spec.get("format")
        if fmt is not None:
            if not isinstance(fmt, str):
                raise where.error(f"{key}.format", f"must be a strptime format, not {fmt!r}")
            try:
                check_format(fmt)
            except ValueError as exc:
                raise where.error(f"{key}.format", str(exc)) from None
        if spec.get("unit") is not None and "age" not in sources:
            raise where.error(f"{key}.unit", "only an 'age' has a unit")
        if "value" in sources:
            try:
                fixed = parse_date(str(spec["value"]).strip(), fmt)
            except ValueError as exc:
                raise where.error(f"{key}.value", str(exc)) from None
            return cls(fixed=fixed)
        if "column" in sources:
            return cls(column=_column_name(spec["column"], where, f"{key}.column"), format=fmt)
        unit = spec.get("unit", "years")
        if not isinstance(unit, str) or unit not in AGE_UNITS:
            raise where.error(f"{key}.unit", f"{unit!r} is not one of {', '.join(AGE_UNITS)}")
        at = None
        if kind == "birth":
            at = _column_name(_required(spec, "at", where, f"{key}."), where, f"{key}.at")
        age_column = _column_name(spec["age"], where, f"{key}.age")
        return cls(age=age_column, age_unit=unit, at=at, format=fmt)

    def columns(self, key: str) -> list[tuple[str, str]]:
        """(key, column) of the columns this date reads."""
        pairs = ((f"{key}.column", self.column), (f"{key}.age", self.age), (f"{key}.at", self.at))
        return [(k, c) for k, c in pairs if c is not None]

    def renamed(self, names: dict[str, str]) -> DateSpec:
        """This date with its columns renamed by `names`."""
        return replace(
            self,
            column=_renamed(self.column, names),
            age=_renamed(self.age, names),
            at=_renamed(self.at, names),
        )


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
    def parse(cls, spec: Any, where: _Where) -> UnitSpec:
        """Read an entry's `unit:`: a column name, or a mapping with column/value."""
        if isinstance(spec, str):
            return cls(spec, None, {}, {})
        spec = _mapping_of(spec, where, "unit")
        _known(spec, {"column", "value", "values", "convert"}, where, "unit.")
        if ("column" in spec) == ("value" in spec):
            raise where.error("unit", "needs a column name, or exactly one of 'column' or 'value'")
        conversions: dict[tuple[str | None, str], tuple[str, float, float]] = {}
        rules = spec.get("convert") or []
        if not isinstance(rules, list):
            raise where.error("unit.convert", "must be a list of conversions")
        for number, rule in enumerate(rules):
            key = f"unit.convert[{number}]"
            try:
                if not isinstance(rule, dict):
                    raise TypeError
                _known(rule, _CONVERT_KEYS, where, f"{key}.")
                target = (str(rule["to"]), float(rule["factor"]), float(rule.get("offset", 0)))
                source = str(rule["from"])
                if not (math.isfinite(target[1]) and target[1] and math.isfinite(target[2])):
                    raise ValueError
            except (KeyError, TypeError, ValueError) as exc:
                raise where.error(
                    key,
                    "each unit conversion needs 'from', 'to' and a finite, non-zero 'factor' "
                    f"(and may give 'offset' and 'code'): {rule!r}",
                ) from exc
            code = rule.get("code")
            conversions[(None if code is None else str(code), source)] = target
        spellings = _value_map(spec.get("values"), where, "unit.values")
        if "column" in spec:
            return cls(
                _column_name(spec["column"], where, "unit.column"), None, spellings, conversions
            )
        fixed = spec["value"]
        if not isinstance(fixed, str) or not fixed.strip():
            raise where.error("unit.value", f"must be a unit, not {fixed!r}")
        return cls(None, fixed.strip(), spellings, conversions)

    def renamed(self, names: dict[str, str]) -> UnitSpec:
        """This unit with its column renamed by `names`."""
        return replace(self, column=_renamed(self.column, names))


@dataclass(frozen=True)
class PersonSpec:
    """The mapping's person table."""

    label: str
    origin: str
    query: bool
    id: str
    birth: DateSpec
    gender: str | None
    genders: dict[str, str]
    death: DateSpec | None
    identifier: str | None = None

    def columns(self) -> list[tuple[str, str]]:
        """(key, column) of each column this entry reads."""
        found = [("id", self.id), *self.birth.columns("birth_date")]
        if self.identifier:
            found.append(("identifier", self.identifier))
        if self.gender:
            found.append(("gender.column", self.gender))
        if self.death:
            found += self.death.columns("death_date")
        return found

    def renamed(self, names: dict[str, str]) -> PersonSpec:
        """This entry with its columns renamed by `names`."""
        return replace(
            self,
            id=names.get(self.id, self.id),
            birth=self.birth.renamed(names),
            identifier=_renamed(self.identifier, names),
            gender=_renamed(self.gender, names),
            death=self.death and self.death.renamed(names),
        )


@dataclass(frozen=True)
class EventSpec:
    """One entry of `events:`: a table of coded facts (several may read one file)."""

    label: str
    entry: str
    origin: str
    query: bool
    id: str
    person: str
    system: str
    code_column: str | None
    code_value: str
    code_values: dict[str, str]
    skip_empty_code: bool
    date: DateSpec
    value: str | None
    unit: UnitSpec | None
    text: str | None
    default_table: str
    #: For image_occurrence: the column of each image file's path (relative paths are
    #: relative to the table's own folder) and, optionally, of its study identifier.
    image_path: str | None = None
    image_study: str | None = None

    def columns(self) -> list[tuple[str, str]]:
        """(key, column) of each column this entry reads."""
        found = [("id", self.id), ("person", self.person)]
        if self.code_column:
            found.append(("code.column", self.code_column))
        found += self.date.columns("date")
        optional = (
            ("value", self.value),
            ("text", self.text),
            ("image.path", self.image_path),
            ("image.study", self.image_study),
        )
        if self.unit and self.unit.column:
            found.append(("unit.column", self.unit.column))
        return found + [(k, c) for k, c in optional if c]

    def renamed(self, names: dict[str, str]) -> EventSpec:
        """This entry with its columns renamed by `names`."""
        return replace(
            self,
            id=names.get(self.id, self.id),
            person=names.get(self.person, self.person),
            code_column=_renamed(self.code_column, names),
            date=self.date.renamed(names),
            value=_renamed(self.value, names),
            unit=self.unit and self.unit.renamed(names),
            text=_renamed(self.text, names),
            image_path=_renamed(self.image_path, names),
            image_study=_renamed(self.image_study, names),
        )


def _origin(spec: dict[str, Any], where: _Where) -> tuple[str, bool]:
    if ("file" in spec) == ("query" in spec):
        raise where.error("file", "each table needs exactly one of 'file' or 'query'")
    if "file" in spec:
        return _column_name(spec["file"], where, "file"), False
    query = spec["query"]
    if not isinstance(query, str) or not query.strip().rstrip(";").strip():
        raise where.error("query", "must be SQL text")
    return query.strip().rstrip(";").rstrip(), True


def _person(doc: Any, where: _Where) -> PersonSpec:
    spec = _mapping_of(doc, where, "person")
    _known(spec, _PERSON_KEYS, where)
    origin, query = _origin(spec, where)
    gender = spec.get("gender")
    gender_column, genders = None, {}
    if gender is not None:
        if isinstance(gender, str):
            gender = {"column": gender}
        gender = _mapping_of(gender, where, "gender")
        _known(gender, {"column", "values"}, where, "gender.")
        gender_column = _column_name(_required(gender, "column", where, "gender."), where, "gender")
        genders = _value_map(gender.get("values"), where, "gender.values")
    death = spec.get("death_date")
    identifier = spec.get("identifier")
    return PersonSpec(
        label=str(spec.get("name") or (origin if not query else "query")),
        origin=origin,
        query=query,
        id=_column_name(_required(spec, "id", where), where, "id"),
        birth=DateSpec.parse(
            _required(spec, "birth_date", where), where, "birth_date", kind="birth"
        ),
        gender=gender_column,
        genders=genders,
        death=None if death is None else DateSpec.parse(death, where, "death_date", kind="death"),
        identifier=None if identifier is None else _column_name(identifier, where, "identifier"),
    )


def _event(spec: Any, where: _Where) -> EventSpec:
    spec = _mapping_of(spec, where, "events")
    _known(spec, _EVENT_KEYS, where)
    origin, query = _origin(spec, where)
    code = _mapping_of(_required(spec, "code", where), where, "code")
    _known(code, {"column", "value", "system", "values", "empty"}, where, "code.")
    empty = code.get("empty", "quarantine")
    if empty not in ("quarantine", "skip"):
        raise where.error("code.empty", f"{empty!r} is neither 'quarantine' nor 'skip'")
    if ("column" in code) == (code.get("value") not in (None, "")):
        raise where.error("code", "needs exactly one of 'column' or 'value'")
    system = _required(code, "system", where, "code.")
    table = spec.get("default_table", "observation")
    if not isinstance(table, str) or table not in EVENT_TABLES:
        raise where.error(
            "default_table", f"{table!r} is not one of {', '.join(sorted(EVENT_TABLES))}"
        )
    text_column = spec.get("text")
    if table == "note" and not text_column:
        raise where.error("text", "a note needs the column of its text")
    image_path, image_study = _image(spec.get("image"), table, where)
    unit = spec.get("unit")
    name = spec.get("name")
    if name is not None and (not isinstance(name, str | int) or not str(name).strip()):
        raise where.error("name", f"must be text, not {name!r}")
    return EventSpec(
        label=str(name or (origin if not query else "query")),
        entry="",
        origin=origin,
        query=query,
        id=_column_name(_required(spec, "id", where), where, "id"),
        person=_column_name(_required(spec, "person", where), where, "person"),
        system=str(system),
        code_column=_code_column(code, where),
        code_value=str(code.get("value", "")),
        code_values=_value_map(code.get("values"), where, "code.values"),
        skip_empty_code=empty == "skip",
        date=DateSpec.parse(_required(spec, "date", where), where, "date", kind="event"),
        value=None if spec.get("value") is None else _column_name(spec["value"], where, "value"),
        unit=None if unit is None else UnitSpec.parse(unit, where),
        text=None if text_column is None else _column_name(text_column, where, "text"),
        default_table=table,
        image_path=image_path,
        image_study=image_study,
    )


def _image(spec: Any, table: str, where: _Where) -> tuple[str | None, str | None]:
    """(path column, study column) of an image_occurrence entry's `image:`; an image entry
    needs one, any other entry none."""
    if (spec is None) != (table != "image_occurrence"):
        message = "an image_occurrence entry needs `image: {path: COLUMN}`, no other entry has one"
        raise where.error("image", message)
    if spec is None:
        return None, None
    spec = _mapping_of(spec, where, "image")
    _known(spec, {"path", "study"}, where, "image.")
    path = _column_name(_required(spec, "path", where, "image."), where, "image.path")
    study = spec.get("study")
    return path, None if study is None else _column_name(study, where, "image.study")


def _code_column(code: dict[str, Any], where: _Where) -> str | None:
    return None if "column" not in code else _column_name(code["column"], where, "code.column")


def _entry_names(path: Path, specs: list[EventSpec], named: list[bool]) -> list[str]:
    """Each entry's identity, the prefix of its record keys: its `name`, else its file or
    query, told apart by its fixed code or its value column when entries share a file."""
    base = [s.label for s in specs]
    names = []
    for i, spec in enumerate(specs):
        name = base[i]
        if not named[i] and base.count(name) > 1:
            name = f"{name}:{spec.code_value or spec.value or spec.code_column}"
        names.append(name)
    for i, name in enumerate(names):
        if name == "person":
            raise _Where(path, f"events[{i}]").error("name", "'person' names the person table")
        first = names.index(name)
        if first != i:
            raise _Where(path, f"events[{i}] ({base[i]})").error(
                "name",
                f"events[{first}] has the same identity {name!r}: give each entry that reads "
                "this file a distinct 'name' (record keys are name/id)",
            )
    return names


@dataclass(frozen=True)
class TableMapping:
    """A parsed mapping file: how a source's rows become persons and events."""

    path: Path
    source: str
    person: PersonSpec
    events: list[EventSpec]
    local_codes: dict[tuple[str, str], tuple[str, str]]
    nulls: frozenset[str]
    csv: CsvFormat = CsvFormat()

    @classmethod
    def load(cls, path: Path) -> TableMapping:
        """Read and check a mapping YAML file (its structure; `check` its columns)."""
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise MappingError(f"{path}: cannot read mapping: {_reason(exc)}") from exc
        top = _Where(path, "mapping")
        doc = _mapping_of(doc, top, "(whole file)")
        _known(doc, _TOP_KEYS, top)
        person = _person(_required(doc, "person", top), _Where(path, "person"))
        raw_events = doc.get("events") or []
        if not isinstance(raw_events, list):
            raise top.error("events", "must be a list of tables")
        events, named = [], []
        for i, spec in enumerate(raw_events):
            label = spec.get("name") or spec.get("file") if isinstance(spec, dict) else None
            where = _Where(path, f"events[{i}]" + (f" ({label})" if label else ""))
            events.append(_event(spec, where))
            named.append(bool(isinstance(spec, dict) and spec.get("name")))
        names = _entry_names(path, events, named)
        events = [replace(e, entry=n) for e, n in zip(events, names, strict=True)]
        nulls = doc.get("nulls", list(DEFAULT_NULLS))
        if not isinstance(nulls, list):
            raise top.error("nulls", "must be a list of texts read as no value")
        return cls(
            path=path,
            source=str(doc.get("source") or path.parent.name),
            person=person,
            events=events,
            local_codes=_local_codes(doc.get("local_codes"), top),
            nulls=frozenset(["", *(str(n) for n in nulls)]),
            csv=CsvFormat.parse(doc.get("csv"), top),
        )

    def check(
        self,
        folder: Path | None = None,
        engine: Engine | None = None,
        unit_known: Callable[[str], bool] | None = None,
    ) -> TableMapping:
        """This mapping with each column named as its file's header or query's result names it
        (matched despite stray spaces and case); a MappingError for a column that is not
        there, or for a conversion to a unit `unit_known` says the vocabulary lacks."""
        headers: dict[str, list[str]] = {}

        def resolved(label: str, spec: PersonSpec | EventSpec) -> dict[str, str]:
            where = _Where(self.path, label)
            if spec.origin not in headers:
                headers[spec.origin] = _header(spec, folder, engine, where, self.csv)
            header = headers[spec.origin]
            names = {}
            for key, column in spec.columns():
                names[column] = _resolve(column, header, where, key, spec)
            if isinstance(spec, EventSpec) and spec.unit and unit_known:
                for number, (unit, _, _) in enumerate(spec.unit.conversions.values()):
                    if not unit_known(unit):
                        raise where.error(
                            f"unit.convert[{number}].to",
                            f"{unit!r} is not a UCUM unit the vocabulary knows",
                        )
            return names

        person = self.person.renamed(resolved("person", self.person))
        events = [
            e.renamed(resolved(f"events[{i}] ({e.label})", e)) for i, e in enumerate(self.events)
        ]
        return replace(self, person=person, events=events)


def _local_codes(doc: Any, where: _Where) -> dict[tuple[str, str], tuple[str, str]]:
    local: dict[tuple[str, str], tuple[str, str]] = {}
    for system, codes in _mapping_of(doc or {}, where, "local_codes").items():
        for code, target in _mapping_of(codes, where, f"local_codes.{system}").items():
            key = f"local_codes.{system}.{code}"
            target = _mapping_of(target, where, key)
            local[(str(system), str(code))] = (
                str(_required(target, "system", where, f"{key}.")),
                str(_required(target, "code", where, f"{key}.")),
            )
    return local


def _header(
    spec: PersonSpec | EventSpec,
    folder: Path | None,
    engine: Engine | None,
    where: _Where,
    fmt: CsvFormat,
) -> list[str]:
    """The column names of an entry's file or query."""
    if spec.query:
        if engine is None:
            raise where.error("query", "the mapping has SQL queries: give the database with --url")
        probe = f"SELECT * FROM ({spec.origin}) AS flip_probe WHERE 1 = 0"
        try:
            with engine.connect() as conn:
                return list(conn.execute(text(probe)).keys())
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise where.error("query", f"the database refused it: {first}") from None
    path = (folder or Path(".")) / spec.origin
    if not path.is_file():
        raise where.error("file", f"{path} does not exist")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            return list(pq.ParquetFile(path).schema_arrow.names)
        except Exception as exc:
            raise where.error("file", f"{path} is not a Parquet file: {exc}") from None
    line = first_line(path, None if fmt.encoding == "utf-8" else fmt.encoding)
    header = next(csv.reader([line], delimiter=fmt.delimiter), [])
    if not any(h.strip() for h in header):
        raise where.error("file", f"{path} has no header line")
    other = sniff_delimiter(line)
    if len(header) == 1 and other != fmt.delimiter and other in line:
        raise where.error(
            "file", f"{path} has one column {header[0]!r}: set csv: {{delimiter: {other!r}}}"
        )
    return header


def _resolve(
    column: str,
    header: Iterable[str],
    where: _Where,
    key: str,
    spec: PersonSpec | EventSpec,
) -> str:
    """The header's name for `column`: the same name, else the one equal to it once spaces
    around it are stripped and case is folded."""
    header = list(header)
    where_from = "the query" if spec.query else spec.origin
    if header.count(column) > 1:
        raise where.error(
            key,
            f"column {column!r} appears {header.count(column)} times in {where_from}: "
            "rename or alias all but one",
        )
    if column in header:
        return column
    wanted = column.strip().casefold()
    matches = [h for h in header if h.strip().casefold() == wanted]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise where.error(key, f"column {column!r} matches several columns of {where_from}")
    shown = ", ".join(h.strip() for h in header[:20])
    raise where.error(key, f"column {column!r} is not in {where_from} (it has: {shown})")
