"""Load OHDSI vocabulary files (CONCEPT.csv and friends) into a store.

Athena ships them tab-separated, unquoted, with `YYYYMMDD` dates; an OMOP export's own
vocabulary tables are often comma-separated and quoted, with ISO or unpadded dates and
upper-case headers. Both load, gzipped or not (`CONCEPT.csv.gz`): the delimiter is read
from the header line, dates and numbers as `omop_values` reads them. A value that cannot
be read, or a required one missing, stops the file with an error naming the file, line
and column; nothing of that file is written. Each file is staged in a temporary table and
merged by its natural key in one transaction, so reloading a newer download replaces rows
instead of duplicating them.
"""

from __future__ import annotations

import csv
import itertools
import sys
import uuid
from collections.abc import Iterable, Iterator
from importlib.resources import files
from pathlib import Path

from sqlalchemy import (
    Column,
    Connection,
    MetaData,
    Table,
    and_,
    delete,
    exists,
    func,
    insert,
    select,
)

from flip.data.cdm import schema
from flip.data.cdm.store import Store, bulk_insert
from flip.data.sources.omop import column_name
from flip.data.sources.omop_values import Field
from flip.data.sources.textfile import TextLines, is_table_file, sniff_delimiter, table_name

_BATCH = 20000

#: Athena file -> (table, natural key columns), in load order.
ATHENA_FILES: dict[str, tuple[Table, tuple[str, ...]]] = {
    "VOCABULARY.csv": (schema.vocabulary, ("vocabulary_id",)),
    "DOMAIN.csv": (schema.domain, ("domain_id",)),
    "CONCEPT_CLASS.csv": (schema.concept_class, ("concept_class_id",)),
    "RELATIONSHIP.csv": (schema.relationship, ("relationship_id",)),
    "CONCEPT.csv": (schema.concept, ("concept_id",)),
    "CONCEPT_RELATIONSHIP.csv": (
        schema.concept_relationship,
        ("concept_id_1", "concept_id_2", "relationship_id"),
    ),
    "CONCEPT_ANCESTOR.csv": (
        schema.concept_ancestor,
        ("ancestor_concept_id", "descendant_concept_id"),
    ),
    "CONCEPT_SYNONYM.csv": (
        schema.concept_synonym,
        ("concept_id", "concept_synonym_name", "language_concept_id"),
    ),
    "DRUG_STRENGTH.csv": (schema.drug_strength, ("drug_concept_id", "ingredient_concept_id")),
    "SOURCE_TO_CONCEPT_MAP.csv": (
        schema.source_to_concept_map,
        ("source_code", "source_vocabulary_id", "target_concept_id"),
    ),
}


def starter_folder() -> Path:
    """The folder of the starter vocabulary that ships with FLIP."""
    return Path(str(files("flip.data.terminology") / "starter"))


def _find(folder: Path, name: str) -> Path | None:
    """The file for `name` (CONCEPT.csv) in any case, as .csv, .txt or .tsv, optionally
    gzipped (`concept.csv.gz`)."""
    stem = Path(name).stem.lower()
    for candidate in sorted(folder.iterdir()):
        if is_table_file(candidate) and table_name(candidate) == stem:
            return candidate
    return None


def _stage(table: Table) -> Table:
    """A staging copy of `table`, created and dropped inside one transaction."""
    columns = [Column(c.name, c.type) for c in table.columns]
    return Table(f"flip_stage_{table.name}_{uuid.uuid4().hex[:8]}", MetaData(), *columns)


def merge_rows(
    store: Store, table: Table, keys: tuple[str, ...], rows: Iterable[dict[str, object]]
) -> int:
    """Insert or replace `rows` in `table` by its natural `keys`, in one transaction."""
    stage = _stage(table)
    count = 0
    with store.begin() as conn:
        stage.create(conn)
        batch: list[dict[str, object]] = []
        for row in rows:
            batch.append(row)
            if len(batch) >= _BATCH:
                bulk_insert(conn, stage, batch)
                count += len(batch)
                batch = []
        bulk_insert(conn, stage, batch)
        count += len(batch)
        _merge(conn, table, stage, keys)
        stage.drop(conn)
    return count


class DuplicateKey(ValueError):
    """Two rows of one load share their natural key."""

    def __init__(self, table: Table, keys: tuple[str, ...], values: tuple[object, ...]) -> None:
        self.values = values
        named = ", ".join(f"{k} {v}" for k, v in zip(keys, values, strict=True))
        super().__init__(f"two {table.name} rows with {named}")


def _merge(conn: Connection, table: Table, stage: Table, keys: tuple[str, ...]) -> None:
    columns = [stage.c[k] for k in keys]
    twice = select(*columns).group_by(*columns).having(func.count() > 1).limit(1)
    repeated = conn.execute(twice).first()
    if repeated is not None:
        raise DuplicateKey(table, keys, tuple(repeated))
    match = and_(*(table.c[k] == stage.c[k] for k in keys))
    conn.execute(delete(table).where(exists().where(match)))
    names = [c.name for c in table.columns]
    conn.execute(insert(table).from_select(names, select(*(stage.c[n] for n in names))))


def _read(path: Path, table: Table, order: str | None = None) -> Iterator[dict[str, object]]:
    """The rows of one vocabulary file; ValueError names the file, line and column at fault
    (a day- or month-first date without `order` among them: it is never guessed)."""
    return (row for _, row in _numbered(path, table, order))


def _numbered(
    path: Path, table: Table, order: str | None = None
) -> Iterator[tuple[int, dict[str, object]]]:
    """(line, row) of one vocabulary file (see `_read`)."""
    csv.field_size_limit(sys.maxsize)
    fields = [Field.of(c) for c in table.columns]
    source = iter(TextLines(path))
    header = next(source, "")
    delimiter = sniff_delimiter(header)
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    lines = csv.reader(itertools.chain([header], source), delimiter=delimiter, quoting=quoting)
    names = [column_name(h) for h in next(lines, [])]
    absent = [f.name for f in fields if f.required and f.name not in names]
    if absent:
        raise ValueError(f"{path}:1: no column {', '.join(absent)} for {table.name}")
    for cells in lines:
        if not any(c.strip() for c in cells):
            continue
        values = dict(zip(names, cells, strict=False))
        row = {}
        for field in fields:
            try:
                value = field.read(values.get(field.name), order)
            except ValueError as exc:
                raise ValueError(f"{path}:{lines.line_num}: {field.name}: {exc}") from None
            if value is None and field.required:
                raise ValueError(f"{path}:{lines.line_num}: {field.name} is empty")
            if field.length and isinstance(value, str) and len(value) > field.length:
                message = f"{field.name} is longer than {field.length} characters"
                raise ValueError(f"{path}:{lines.line_num}: {message}")
            row[field.name] = value
        yield lines.line_num, row


def load_athena(store: Store, folder: Path, date_order: str | None = None) -> dict[str, int]:
    """Load every Athena file present in `folder`; return rows loaded per table. Day- or
    month-first dates (`01/02/2020`, as a spreadsheet re-saves a file) are read in
    `date_order` ("dmy" or "mdy"); without one the first stops the load naming its line."""
    if not folder.is_dir() or _find(folder, "CONCEPT.csv") is None:
        raise FileNotFoundError(f"{folder}: no CONCEPT.csv (is this an Athena download folder?)")
    counts: dict[str, int] = {}
    for name, (table, keys) in ATHENA_FILES.items():
        path = _find(folder, name)
        if path is not None:
            try:
                rows = _read(path, table, date_order)
                counts[table.name] = merge_rows(store, table, keys, rows)
            except DuplicateKey as exc:
                numbered = _numbered(path, table, date_order)
                found = [str(n) for n, row in numbered if _key(row, keys) == exc.values]
                raise ValueError(f"{path}: {exc} (lines {', '.join(found) or '?'})") from None
    return counts


def _key(row: dict[str, object], keys: tuple[str, ...]) -> tuple[object, ...]:
    """The natural key of a row."""
    return tuple(row[k] for k in keys)
