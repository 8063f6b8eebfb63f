"""An existing OMOP CDM (v5.3 or v5.4): attached by SQLAlchemy URL or read from a CSV export.

A CSV export is a folder of one file per table (PERSON.csv, person.csv or person.txt;
comma, tab, semicolon or pipe separated; header names in any case, with stray spaces),
the layout ETL-Synthea, Eunomia and database exports use; a Parquet export the same with
person.parquet and so on, as Spark and dbt-based ETL tools write it. Values are read as
`omop_values` says. v5.3 column names are upgraded to v5.4. Every file or table that is
not read, and every column v5.4 does not have, is reported as `Unread` with the reason.

Per row: a bad optional value is nulled with a warning (`omop.<kind>_unreadable`); a
missing required `*_concept_id` becomes 0, "no matching concept" (`omop.concept_missing`);
a missing required end date of a visit or drug exposure is taken from its start, as the
CDM conventions say (`omop.end_from_start`); a required date missing beside its datetime
is the datetime's day; a foreign key of 0 is no reference. A row still lacking a required
value, or with an unreadable one, is quarantined alone.
"""

from __future__ import annotations

import csv
import re
import sys
from calendar import monthrange
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from datetime import MAXYEAR, MINYEAR, date, datetime, time, timedelta
from pathlib import Path

import orjson
from sqlalchemy import Engine, Table, inspect, literal_column, select
from sqlalchemy import table as sql_table

from flip.data.cdm import schema
from flip.data.sources import textfile
from flip.data.sources.omop_values import Field
from flip.data.sources.records import Rejected, Skipped, SourceRecord, SourceRow, Unread
from flip.data.sources.textfile import (
    MAX_LINE,
    TextLines,
    is_table_file,
    sniff_delimiter,
    table_name,
)
from flip.data.sources.values import DateOrderUnknown

#: The rule (quarantine of a required date, warning of an optional one) of a day- or
#: month-first date (`01/02/2020`) read without a configured day order: never guessed.
DATE_ORDER_UNKNOWN = "omop.date_order_unknown"

#: Tables read from an OMOP source, persons first.
TABLES = (
    "location",
    "care_site",
    "provider",
    "person",
    "observation_period",
    "death",
    "visit_occurrence",
    "visit_detail",
    "condition_occurrence",
    "drug_exposure",
    "procedure_occurrence",
    "device_exposure",
    "measurement",
    "observation",
    "note",
    "note_nlp",
    "specimen",
    "payer_plan_period",
    "cost",
    "condition_era",
    "drug_era",
    "dose_era",
    "episode",
)

VOCABULARY_TABLES = (
    "concept",
    "concept_relationship",
    "concept_ancestor",
    "concept_synonym",
    "concept_class",
    "vocabulary",
    "domain",
    "relationship",
    "drug_strength",
    "source_to_concept_map",
    "concept_cpt4",
)

#: Tables an export may hold that the ingest does not read, and why.
NOT_READ = {
    **{
        name: "a vocabulary table: load the export's vocabulary with `flip site vocab load athena`"
        for name in VOCABULARY_TABLES
    },
    "cdm_source": "describes the export, not patients",
    "metadata": "describes the export, not patients",
    "fact_relationship": "links rows by their source ids without a row id of its own; not read",
    "episode_event": "links rows by their source ids without a row id of its own; not read",
    "cohort": "a results table (cohorts are defined in FLIP), not CDM data",
    "cohort_definition": "a results table (cohorts are defined in FLIP), not CDM data",
    "cohort_attribute": "a results table (cohorts are defined in FLIP), not CDM data",
    "attribute_definition": "a results table (cohorts are defined in FLIP), not CDM data",
}

#: CDM v5.3 column -> v5.4 column.
V53_RENAMES = {
    "admitting_source_concept_id": "admitted_from_concept_id",
    "admitting_source_value": "admitted_from_source_value",
    "discharge_to_concept_id": "discharged_to_concept_id",
    "discharge_to_source_value": "discharged_to_source_value",
    "visit_detail_parent_id": "parent_visit_detail_id",
    "reveue_code_source_value": "revenue_code_source_value",
}

#: Foreign keys where 0 means "none" in exports (person_id is never one of them).
OPTIONAL_REFERENCES = frozenset(
    {
        "visit_occurrence_id",
        "preceding_visit_occurrence_id",
        "visit_detail_id",
        "preceding_visit_detail_id",
        "parent_visit_detail_id",
        "provider_id",
        "care_site_id",
        "location_id",
        "payer_plan_period_id",
        "episode_parent_id",
    }
)

#: Table -> (required end date, its start date): an end missing in the export is its start.
END_FROM_START = {
    "visit_occurrence": ("visit_end_date", "visit_start_date"),
    "visit_detail": ("visit_detail_end_date", "visit_detail_start_date"),
    "drug_exposure": ("drug_exposure_end_date", "drug_exposure_start_date"),
}


def column_name(header: str | None) -> str:
    """The v5.4 column a header names, whatever its case, spaces, quotes or v5.3 name."""
    name = (header or "").strip().strip('"').strip().lower()
    return V53_RENAMES.get(name, name)


class TableReader:
    """Turns the values of one source row into a CDM row record, a quarantine entry or a skip."""

    def __init__(self, table: Table, order: str | None = None) -> None:
        self.table = table
        self.order = order
        self.fields = [Field.of(c) for c in table.columns]
        self.primary = next(iter(table.primary_key.columns), None)

    def record(
        self, values: Mapping[str, object], location: str, raw: bytes, notes: tuple[str, ...] = ()
    ) -> SourceRecord:
        """The record of one row whose keys are v5.4 column names; `notes` are warnings the
        file reader already has for it."""
        name = self.table.name
        if _is_header(values):
            return Skipped(None, location, "omop.header_row", f"{name}: a header line as data")
        row: dict[str, object] = {}
        warnings: list[str] = list(notes)
        for field in self.fields:
            try:
                value = field.read(values.get(field.name), self.order)
            except ValueError as exc:
                rule = DATE_ORDER_UNKNOWN if isinstance(exc, DateOrderUnknown) else None
                if field.required and not field.name.endswith("_concept_id"):
                    key = self.key(values)
                    message = f"{name}.{field.name} {values.get(field.name)!r}: {exc}"
                    return Rejected(key, location, rule or "omop.type", message, raw)
                warnings.append(rule or f"omop.{field.kind}_unreadable")
                value = None
            if field.length and isinstance(value, str) and len(value) > field.length:
                value = value[: field.length]
                warnings.append("omop.text_truncated")
            row[field.name] = value
        self._complete(row, warnings)
        if name == "person" and (problem := _birth_problem(row, warnings)):
            return Rejected(self.key(row), location, "omop.type", problem, raw)
        primary = self.primary
        if primary is not None and row[primary.name] is None:
            return Rejected(
                None, location, "omop.id_missing", f"{name} row has no {primary.name}", raw
            )
        missing = [f.name for f in self.fields if f.required and row[f.name] is None]
        key = self.key(row)
        if missing:
            message = f"{name} lacks {', '.join(missing)}"
            return Rejected(key, location, "conformance.required", message, raw)
        person = row.get("person_id")
        person_key = None if person is None or name == "person" else f"person/{person}"
        assert key is not None
        return SourceRow(key, name, row, person_key, location, raw, tuple(warnings))

    def key(self, row: Mapping[str, object]) -> str | None:
        """The record key of a row, from its primary id (None without one)."""
        if self.primary is None:
            return None
        ident = row.get(self.primary.name)
        if isinstance(ident, str):
            ident = ident.strip() or None
        return None if ident is None else f"{self.table.name}/{ident}"

    def _complete(self, row: dict[str, object], warnings: list[str]) -> None:
        """Fill what the CDM conventions let a reader derive (see the module)."""
        for field in self.fields:
            name = field.name
            if field.kind == "date" and row[name] is None and row.get(f"{name}time") is not None:
                row[name] = row[f"{name}time"].date()  # type: ignore[attr-defined]
            elif field.kind == "integer" and name in OPTIONAL_REFERENCES and row[name] == 0:
                row[name] = None
        _time_of_day(self.table.name, row, warnings)
        if self.table.name == "person":
            born = row.get("birth_datetime")
            if row["year_of_birth"] is None and born is not None:
                row["year_of_birth"] = born.year  # type: ignore[attr-defined]
                row["month_of_birth"] = row["month_of_birth"] or born.month  # type: ignore[attr-defined]
                row["day_of_birth"] = row["day_of_birth"] or born.day  # type: ignore[attr-defined]
        ends = END_FROM_START.get(self.table.name)
        if ends and row[ends[0]] is None and isinstance(row[ends[1]], date):
            start: date = row[ends[1]]  # type: ignore[assignment]
            supply = row.get("days_supply")
            days = supply - 1 if isinstance(supply, int) and supply > 0 else 0
            row[ends[0]] = start + timedelta(days=days)
            warnings.append("omop.end_from_start")
        for field in self.fields:
            if field.required and field.name.endswith("_concept_id") and row[field.name] is None:
                row[field.name] = 0
                warnings.append("omop.concept_missing")


#: A v5.3 `measurement_time` as ETLs write it: `HH:MM`, `HH:MM:SS`, with fractions.
_TIME = re.compile(r"^\s*(\d{1,2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?\s*$")


def _time_of_day(table: str, row: dict[str, object], warnings: list[str]) -> None:
    """A v5.3 export's time of day (`measurement_time`, text beside the date) joins the
    date into the `*_datetime` it left empty; one that reads as no time is counted
    (`omop.time_unreadable`) and the datetime left empty."""
    prefix = table.removesuffix("_occurrence")
    day, text = row.get(f"{prefix}_date"), row.get(f"{prefix}_time")
    if row.get(f"{prefix}_datetime", False) is not None or not isinstance(text, str):
        return
    if not isinstance(day, date) or not text.strip():
        return
    match = _TIME.match(text)
    hour, minute, second = (int(p or 0) for p in match.groups()) if match else (99, 0, 0)
    if hour > 23 or minute > 59 or second > 59:
        warnings.append("omop.time_unreadable")
        return
    row[f"{prefix}_datetime"] = datetime.combine(day, time(hour, minute, second))


def _birth_problem(row: dict[str, object], warnings: list[str]) -> str | None:
    """Why a person's year of birth is no calendar year; a month or day of birth that makes
    no date with it is nulled (`omop.birth_unreadable`)."""
    year, month, day = row["year_of_birth"], row["month_of_birth"], row["day_of_birth"]
    if not isinstance(year, int):
        return None
    if not MINYEAR <= year <= MAXYEAR:
        return f"person.year_of_birth {year} is not a calendar year"
    if isinstance(month, int) and not 1 <= month <= 12:
        row["month_of_birth"] = row["day_of_birth"] = None
        warnings.append("omop.birth_unreadable")
    elif isinstance(day, int) and not 1 <= day <= monthrange(year, month or 1)[1]:
        row["day_of_birth"] = None
        warnings.append("omop.birth_unreadable")
    return None


def _is_header(values: Mapping[str, object]) -> bool:
    """Whether a row holds its own column names (a header line loaded or repeated as data)."""
    named = [(k, v) for k, v in values.items() if isinstance(v, str) and v.strip()]
    return len(named) > 1 and all(column_name(v) == k for k, v in named)  # type: ignore[arg-type]


def _names_its_columns(table: Table, columns: list[str], row: Iterable[object]) -> bool:
    """Whether a table whose columns have no CDM names holds them in its first row (what a
    CSV of an empty table becomes when loaded without its header, as in Eunomia)."""
    if any(c in table.c for c in columns):
        return False
    named = [column_name(v) for v in row if isinstance(v, str)]
    return sum(n in table.c for n in named) > len(columns) // 2


def _is_table(path: Path) -> bool:
    """Whether a file of an export is a table file: CSV-like (`textfile.is_table_file`) or
    Parquet."""
    return is_table_file(path) or path.suffix.lower() == ".parquet"


def _files(folder: Path) -> dict[str, list[Path]]:
    """The table files of an export folder by the table name they carry (lower case)."""
    found: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        if (path.is_file() and _is_table(path)) or _parts(path):
            found.setdefault(_shard_of(path) or table_name(path), []).append(path)
    return found


#: A table's shard as BigQuery, Spark or split tools name it: `measurement-000000000001`,
#: `measurement_part_003`, `person-00000-of-00004`, `drug_exposure.2`.
_SHARD = re.compile(r"^(?P<table>[a-z_]+?)[-_.](?:part[-_]?)?\d+(?:-of-\d+)?$")


def _shard_of(path: Path) -> str | None:
    """The CDM table a sharded file is one part of, else None."""
    if not path.is_file():
        return None
    match = _SHARD.match(table_name(path))
    table = match.group("table") if match else None
    return table if table in TABLES else None


def _parts(path: Path) -> list[Path]:
    """The Parquet part files of a folder written by Spark for one table
    (`person.parquet/part-00000-….parquet`), in name order; empty for anything else."""
    if not path.is_dir() or table_name(path) not in TABLES:
        return []
    return sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() == ".parquet")


class RecordTooLong(csv.Error):
    """A CSV record (a quoted field left open, across lines) longer than MAX_LINE."""


class _Lines:
    """The numbered lines of a file for `csv`, keeping those of the record being parsed so
    that a malformed record gives back all but its first line to be read again; a record
    whose lines pass MAX_LINE together (an unclosed quote) is RecordTooLong."""

    def __init__(self, lines: Iterable[str], number: int) -> None:
        self._source = iter(lines)
        self._number = number
        self._replay: deque[tuple[int, str]] = deque()
        self.taken: list[tuple[int, str]] = []
        self.size = 0

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        if self._replay:
            item = self._replay.popleft()
        else:
            line = next(self._source)
            self._number += 1
            item = (self._number, line)
        self.taken.append(item)
        self.size = len(item[1]) + (self.size if len(self.taken) > 1 else 0)
        if self.size > textfile.MAX_LINE:
            limit = textfile.MAX_LINE
            raise RecordTooLong(f"a record longer than {limit:,} bytes (a quote left open?)")
        return item[1]

    def give_back(self) -> tuple[int, str]:
        """The first line of the record being parsed; its other lines are read again."""
        first, *rest = self.taken
        self._replay.extendleft(reversed(rest))
        self.taken = []
        return first


def read_file(path: Path, table: Table, order: str | None = None) -> Iterator[SourceRecord]:
    """Yield the rows of one CDM table file (or Spark folder of Parquet parts), then its
    columns v5.4 does not have as Unread.

    A record the CSV rules cannot parse (an unclosed quote, text after a closing quote) is
    quarantined as its first line alone (`omop.csv_malformed`), and reading goes on from
    the next line (so is a record longer than MAX_LINE: a quote left open); a record
    one of whose lines was too long to read is quarantined whole, never cut; a row with
    more non-empty cells than the header is quarantined (`omop.extra_cells`); a row
    holding bytes that are not UTF-8 loads with the warning
    `omop.text_not_utf8` (they are read as Windows-1252); a line longer than
    textfile.MAX_LINE is read past, not into memory, and quarantined (`omop.line_too_long`).
    """
    if path.is_dir():
        for part in _parts(path):
            yield from read_parquet(part, table, order)
        return
    if path.suffix.lower() == ".parquet":
        yield from read_parquet(path, table, order)
        return
    csv.field_size_limit(sys.maxsize)
    reader = TableReader(table, order)
    text = TextLines(path, skip_too_long=True)
    source = iter(text)
    header = next(source, "")
    delimiter = sniff_delimiter(header)
    headers = next(csv.reader([header], delimiter=delimiter), [])
    names = [column_name(h) for h in headers]
    if (twice := _same_column(headers, names)) is not None:
        yield Unread(str(path), twice, failed=True)
        return
    lines = _Lines(source, 1)
    rows = csv.reader(lines, delimiter=delimiter, strict=True)
    while True:
        lines.taken = []
        legacy = text.legacy
        try:
            cells = next(rows)
        except StopIteration:
            yield from _too_long(text)
            break
        except csv.Error as exc:
            number, line = lines.give_back()
            message = f"{path.name} line {number}: {exc}; the line is quarantined"
            where = f"{path}:{number}"
            yield Rejected(None, where, "omop.csv_malformed", message, line.encode())
            continue
        cut = list(_too_long(text))
        yield from cut
        if cut and len(lines.taken) > 1:
            continue  # a line of the record was read past: the record is not whole
        if not any(c.strip() for c in cells):
            continue
        values = dict(zip(names, cells, strict=False))
        location = f"{path}:{lines.taken[0][0]}"
        raw = orjson.dumps(values)
        if any(c.strip() for c in cells[len(names) :]):
            message = f"{table.name} row has {len(cells)} cells, its header {len(names)}"
            yield Rejected(reader.key(values), location, "omop.extra_cells", message, raw)
            continue
        notes = ("omop.text_not_utf8",) if text.legacy != legacy else ()
        yield reader.record(values, location, raw, notes)
    for name in names:
        if name and name not in table.c:
            yield Unread(f"{path} column {name}", f"not a column of CDM v5.4 {table.name}")


def _too_long(text: TextLines) -> Iterator[Rejected]:
    """The lines of a file read past for their length, quarantined (`omop.line_too_long`)."""
    for error in text.take_too_long():
        where = f"{error.path}:{error.number}"
        yield Rejected(None, where, "omop.line_too_long", str(error), b"")


def read_parquet(path: Path, table: Table, order: str | None = None) -> Iterator[SourceRecord]:
    """Yield the rows of one CDM table Parquet file (header names as `column_name` reads
    them, values as `omop_values` reads them; a first row of column names, as an empty
    table's CSV loaded without its header leaves it, skipped), then its columns v5.4 does
    not have. A row with a text cell longer than MAX_CELL is quarantined
    (`omop.cell_too_long`); a file that cannot be read (corrupt) is listed as not read,
    naming it and the rows read before the fault, and the export goes on."""
    import pyarrow as pa

    try:
        yield from _parquet_rows(path, table, order)
    except (pa.ArrowException, OSError) as exc:
        reason = f"{path.name} is not a readable Parquet file: {str(exc).splitlines()[0]}"
        yield Unread(str(path), reason, failed=True)


#: The longest text or binary cell a Parquet row may hold (as textfile.MAX_LINE for CSV).
MAX_CELL = MAX_LINE


def _parquet_rows(path: Path, table: Table, order: str | None) -> Iterator[SourceRecord]:
    import pyarrow.parquet as pq

    reader = TableReader(table, order)
    source = pq.ParquetFile(path)
    names = [column_name(n) for n in source.schema_arrow.names]
    if (twice := _same_column(source.schema_arrow.names, names)) is not None:
        yield Unread(str(path), twice, failed=True)
        return
    number = 0
    for batch in source.iter_batches(batch_size=10000):
        oversized = _oversized_cells(batch, names)
        kept = batch
        if oversized:
            kept = batch.filter([i not in oversized for i in range(batch.num_rows)])
        rows = iter(kept.to_pylist())
        for index in range(batch.num_rows):
            number += 1
            if index in oversized:
                column, size = oversized[index]
                message = (
                    f"{path.name} row {number}: {column} holds {size:,} bytes (> {MAX_CELL:,})"
                )
                yield Rejected(None, f"{path}#row{number}", "omop.cell_too_long", message, b"")
                continue
            row = next(rows)
            cells = list(row.values())
            if number == 1 and _names_its_columns(table, names, cells):
                names = [column_name(str(v)) for v in cells]
                message = f"{table.name}: its column names as the first row"
                yield Skipped(None, f"{path}#row1", "omop.header_row", message)
                continue
            values = dict(zip(names, cells, strict=True))
            raw = orjson.dumps(values, default=str)
            yield reader.record(values, f"{path}#row{number}", raw)
    for name in names:
        if name and name not in table.c:
            yield Unread(f"{path} column {name}", f"not a column of CDM v5.4 {table.name}")


def _same_column(headers: list[str], names: list[str]) -> str | None:
    """Why a file is not read when two of its headers name one column (`person_id` and
    `PERSON_ID`): which value to keep cannot be known. None when all differ."""
    seen: dict[str, str] = {}
    for header, name in zip(headers, names, strict=True):
        if name in seen and name:
            return f"columns {seen[name]!r} and {header!r} are both {name}: the file is not read"
        seen[name] = header
    return None


def _oversized_cells(batch, names: list[str]) -> dict[int, tuple[str, int]]:
    """The rows of a Parquet record batch with a text or binary cell longer than
    MAX_CELL: (column, size) by row index, found without copying the cells."""
    import pyarrow as pa
    import pyarrow.compute as pc

    found: dict[int, tuple[str, int]] = {}
    for name, column in zip(names, batch.columns, strict=True):
        kind = column.type
        if not (pa.types.is_string(kind) or pa.types.is_binary(kind)) and not (
            pa.types.is_large_string(kind) or pa.types.is_large_binary(kind)
        ):
            continue
        lengths = pc.binary_length(column)
        if (pc.max(lengths).as_py() or 0) <= MAX_CELL:
            continue
        for index, size in enumerate(lengths.to_pylist()):
            if size is not None and size > MAX_CELL:
                found.setdefault(index, (name, size))
    return found


def read_folder(folder: Path, order: str | None = None) -> Iterator[SourceRecord]:
    """Yield the rows of every OMOP table file (CSV, or Parquet as ETL tools write it) in an
    export folder, and what it did not read; day- or month-first dates read in `order`."""
    files = _files(folder)
    if "person" not in files:
        raise FileNotFoundError(
            f"{folder}: no person.csv or person.parquet (is this an OMOP CDM export?)"
        )
    for name in TABLES:
        # an unsharded file first: beside it, a shard is a second copy
        paths = sorted(files.pop(name, []), key=lambda p: _shard_of(p) is not None)
        read = paths if paths and all(_shard_of(p) for p in paths) else paths[:1]
        for extra in paths[len(read) :]:
            yield Unread(str(extra), f"{paths[0].name} was read for {name}", failed=True)
        for path in read:  # the parts of a sharded table, in name order
            yield from read_file(path, schema.metadata.tables[name], order)
    for name, paths in files.items():
        reason = NOT_READ.get(name, "not an OMOP CDM v5.3/v5.4 clinical or health-system table")
        for path in paths:
            yield Unread(str(path), reason)
    for path in sorted(folder.iterdir()):
        if path.is_dir():
            if not _parts(path):
                yield Unread(str(path), "a folder: only the export's top level is read")
        elif not _is_table(path):
            yield Unread(
                str(path), "not a table file (.csv, .txt or .tsv, or one gzipped; .parquet)"
            )


def read_database(
    engine: Engine, schema_name: str | None = None, order: str | None = None
) -> Iterator[SourceRecord]:
    """Yield the rows of every OMOP table found in a database (any SQLAlchemy URL), and the
    tables and columns it did not read with why; dates held as text read as `read_file`."""
    where = engine.url.render_as_string(hide_password=True)
    names = {n.lower(): n for n in inspect(engine).get_table_names(schema=schema_name)}
    if "person" not in names:
        raise FileNotFoundError(f"{where}: no person table")
    with engine.connect() as conn:
        for name in TABLES:
            if name not in names:
                continue
            reader = TableReader(schema.metadata.tables[name], order)
            query = select(literal_column("*")).select_from(
                sql_table(names[name], schema=schema_name)
            )
            result = conn.execution_options(stream_results=True, yield_per=5000).execute(query)
            columns = [column_name(k) for k in result.keys()]  # noqa: SIM118
            table = schema.metadata.tables[name]
            for number, row in enumerate(result, start=1):
                if number == 1 and _names_its_columns(table, columns, row):
                    columns = [column_name(str(v)) for v in row]
                    message = f"{name}: its column names as the first row"
                    yield Skipped(None, f"{where}#{name}:1", "omop.header_row", message)
                    continue
                values = dict(zip(columns, row, strict=True))
                raw = orjson.dumps(values, default=str)
                yield reader.record(values, f"{where}#{name}:{number}", raw)
            for column in columns:
                if column not in table.c:
                    yield Unread(f"{where}#{name}.{column}", f"not a column of CDM v5.4 {name}")
    for name, actual in sorted(names.items()):
        if name not in TABLES:
            reason = NOT_READ.get(name, "not an OMOP CDM v5.3/v5.4 clinical or health-system table")
            yield Unread(f"{where}#{actual}", reason)
