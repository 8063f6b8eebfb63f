"""Load OHDSI Athena vocabulary files (tab-separated CONCEPT.csv and friends) into a store.

Each file is staged in a temporary table and merged by its natural key in one
transaction, so reloading a newer download replaces rows instead of duplicating them.
"""

from __future__ import annotations

import csv
import sys
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime
from importlib.resources import files
from pathlib import Path

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Date,
    Double,
    Integer,
    MetaData,
    Table,
    and_,
    delete,
    exists,
    insert,
    select,
)

from flip.data.cdm import schema
from flip.data.cdm.store import Store, bulk_insert

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
}


def starter_folder() -> Path:
    """The folder of the starter vocabulary that ships with FLIP."""
    return Path(str(files("flip.data.terminology") / "starter"))


def _find(folder: Path, name: str) -> Path | None:
    for candidate in folder.iterdir():
        if candidate.name.lower() == name.lower():
            return candidate
    return None


def _parser(column: Column) -> Callable[[str], object]:
    if isinstance(column.type, Date):
        return lambda v: datetime.strptime(v, "%Y%m%d").date() if v else None
    if isinstance(column.type, Integer | BigInteger):
        return lambda v: int(v) if v else None
    if isinstance(column.type, Double):
        return lambda v: float(v) if v else None
    return lambda v: v or None


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


def _merge(conn: Connection, table: Table, stage: Table, keys: tuple[str, ...]) -> None:
    match = and_(*(table.c[k] == stage.c[k] for k in keys))
    conn.execute(delete(table).where(exists().where(match)))
    names = [c.name for c in table.columns]
    conn.execute(insert(table).from_select(names, select(*(stage.c[n] for n in names))))


def _read(path: Path, table: Table) -> Iterable[dict[str, object]]:
    csv.field_size_limit(sys.maxsize)
    parsers = {c.name: _parser(c) for c in table.columns}
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        for raw in reader:
            row = {}
            for name, value in raw.items():
                key = (name or "").lower()
                if key in parsers:
                    row[key] = parsers[key](value or "")
            yield row


def load_athena(store: Store, folder: Path) -> dict[str, int]:
    """Load every Athena file present in `folder`; return rows loaded per table."""
    if not folder.is_dir() or _find(folder, "CONCEPT.csv") is None:
        raise FileNotFoundError(f"{folder}: no CONCEPT.csv (is this an Athena download folder?)")
    counts: dict[str, int] = {}
    for name, (table, keys) in ATHENA_FILES.items():
        path = _find(folder, name)
        if path is not None:
            counts[table.name] = merge_rows(store, table, keys, _read(path, table))
    return counts
