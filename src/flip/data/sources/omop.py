"""An existing OMOP CDM (v5.3 or v5.4): attached by SQLAlchemy URL or read from a CSV export.

A CSV export is a folder of one file per table (PERSON.csv or person.csv, comma-
or tab-separated), the layout ETL-Synthea and Athena use. v5.3 column names are
upgraded to v5.4; columns v5.4 does not have are dropped and counted.
"""

from __future__ import annotations

import csv
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import BigInteger, Date, DateTime, Double, Engine, Integer, MetaData, Table, select

from flip.data.cdm import schema
from flip.data.sources.records import Rejected, SourceRecord, SourceRow

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
    "specimen",
    "payer_plan_period",
    "condition_era",
    "drug_era",
    "dose_era",
)

#: CDM v5.3 column -> v5.4 column.
V53_RENAMES = {
    "admitting_source_concept_id": "admitted_from_concept_id",
    "admitting_source_value": "admitted_from_source_value",
    "discharge_to_concept_id": "discharged_to_concept_id",
    "discharge_to_source_value": "discharged_to_source_value",
    "visit_detail_parent_id": "parent_visit_detail_id",
}


def _parser(column) -> Callable[[str], object]:
    if isinstance(column.type, DateTime):
        return lambda v: datetime.fromisoformat(v.replace("Z", "")) if v else None
    if isinstance(column.type, Date):
        return lambda v: (
            (date.fromisoformat(v[:10]) if "-" in v else datetime.strptime(v, "%Y%m%d").date())
            if v
            else None
        )
    if isinstance(column.type, Integer | BigInteger):
        return lambda v: int(float(v)) if v else None
    if isinstance(column.type, Double):
        return lambda v: float(v) if v else None
    return lambda v: v or None


def _row_record(
    table: Table, values: dict[str, Any], location: str, raw: bytes, dropped: Counter[str]
) -> SourceRecord:
    row: dict[str, Any] = {}
    for name, value in values.items():
        column = V53_RENAMES.get(name.lower(), name.lower())
        if column in table.c:
            row[column] = value
        else:
            dropped[f"{table.name}.{column}"] += 1
    primary = next(iter(table.primary_key.columns), None)
    if primary is not None and row.get(primary.name) is None:
        return Rejected(
            None, location, "omop.id_missing", f"{table.name} row has no {primary.name}", raw
        )
    missing = [c.name for c in table.columns if not c.nullable and row.get(c.name) is None]
    if missing:
        ident = row.get(primary.name) if primary is not None else None
        return Rejected(
            None if ident is None else f"{table.name}/{ident}",
            location,
            "conformance.required",
            f"{table.name} lacks {', '.join(missing)}",
            raw,
        )
    ident = row[primary.name] if primary is not None else orjson.dumps(row, default=str).decode()
    person = row.get("person_id")
    return SourceRow(
        f"{table.name}/{ident}",
        table.name,
        row,
        None if person is None or table.name == "person" else f"person/{person}",
        location,
        raw,
    )


def _find(folder: Path, name: str) -> Path | None:
    for candidate in folder.iterdir():
        if candidate.name.lower() in (f"{name}.csv", f"{name}.txt"):
            return candidate
    return None


def read_folder(folder: Path, dropped: Counter[str] | None = None) -> Iterator[SourceRecord]:
    """Yield the rows of every OMOP table file in an export folder."""
    dropped = dropped if dropped is not None else Counter()
    csv.field_size_limit(sys.maxsize)
    if _find(folder, "person") is None:
        raise FileNotFoundError(f"{folder}: no person.csv (is this an OMOP CSV export?)")
    for name in TABLES:
        path = _find(folder, name)
        if path is None:
            continue
        table = schema.metadata.tables[name]
        with path.open(newline="", encoding="utf-8-sig") as handle:
            sample = handle.readline()
            handle.seek(0)
            delimiter = "\t" if sample.count("\t") > sample.count(",") else ","
            reader = csv.DictReader(handle, delimiter=delimiter)
            parsers = {c.name: _parser(c) for c in table.columns}
            for number, raw_row in enumerate(reader, start=2):
                location = f"{path}:{number}"
                raw = orjson.dumps(raw_row, option=orjson.OPT_NON_STR_KEYS)
                try:
                    values = {}
                    for key, value in raw_row.items():
                        column = V53_RENAMES.get((key or "").lower(), (key or "").lower())
                        parse = parsers.get(column)
                        values[column] = parse(value or "") if parse else value
                except ValueError as exc:
                    yield Rejected(None, location, "omop.type", f"{name}: {exc}", raw)
                    continue
                yield _row_record(table, values, location, raw, dropped)


def read_database(
    engine: Engine, schema_name: str | None = None, dropped: Counter[str] | None = None
) -> Iterator[SourceRecord]:
    """Yield the rows of every OMOP table found in a database (any SQLAlchemy URL)."""
    dropped = dropped if dropped is not None else Counter()
    source = MetaData(schema=schema_name)
    source.reflect(engine, only=lambda name, _: name.lower() in TABLES)
    found = {t.name.lower(): t for t in source.tables.values()}
    if "person" not in found:
        raise FileNotFoundError(
            f"{engine.url.render_as_string(hide_password=True)}: no person table"
        )
    where = engine.url.render_as_string(hide_password=True)
    with engine.connect() as conn:
        for name in TABLES:
            if name not in found:
                continue
            result = conn.execution_options(stream_results=True, yield_per=5000).execute(
                select(found[name])
            )
            for number, row in enumerate(result.mappings(), start=1):
                values = {str(k): v for k, v in row.items()}
                yield _row_record(
                    schema.metadata.tables[name],
                    values,
                    f"{where}#{name}:{number}",
                    orjson.dumps(values, default=str),
                    dropped,
                )
