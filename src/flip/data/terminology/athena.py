"""Load OHDSI Athena vocabulary files (tab-separated CONCEPT.csv and friends) into a store."""

from __future__ import annotations

import csv
from datetime import date, datetime
from importlib.resources import files
from pathlib import Path

from sqlalchemy import Table, delete

from flip.data.cdm.schema import concept, concept_relationship
from flip.data.cdm.store import Store

_BATCH = 5000


def starter_folder() -> Path:
    """The folder of the starter vocabulary that ships with FLIP."""
    return Path(str(files("flip.data.terminology") / "starter"))


def _find(folder: Path, name: str) -> Path | None:
    for candidate in folder.iterdir():
        if candidate.name.lower() == name.lower():
            return candidate
    return None


def _parse_date(text: str) -> date:
    return datetime.strptime(text, "%Y%m%d").date()


def _load_table(store: Store, table: Table, path: Path, key_columns: list[str]) -> int:
    date_columns = {c.name for c in table.columns if c.name.startswith("valid_")}
    int_columns = {c.name for c in table.columns if c.name.startswith("concept_id")}
    loaded = 0
    with store.begin() as conn, path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        batch: list[dict[str, object]] = []
        seen: set[tuple[object, ...]] = set()
        for raw in reader:
            row: dict[str, object] = {}
            for name, value in raw.items():
                key = name.lower()
                if key in date_columns:
                    row[key] = _parse_date(value)
                elif key in int_columns:
                    row[key] = int(value)
                else:
                    row[key] = value or None
            seen.add(tuple(row[k] for k in key_columns))
            batch.append(row)
            if len(batch) >= _BATCH:
                loaded += _replace(conn, table, batch, key_columns)
                batch = []
        loaded += _replace(conn, table, batch, key_columns)
    return loaded


def _replace(conn, table: Table, rows: list[dict[str, object]], key_columns: list[str]) -> int:
    if not rows:
        return 0
    if len(key_columns) == 1:
        column = table.c[key_columns[0]]
        conn.execute(delete(table).where(column.in_([r[key_columns[0]] for r in rows])))
    else:
        for row in rows:
            conn.execute(delete(table).where(*(table.c[k] == row[k] for k in key_columns)))
    conn.execute(table.insert(), rows)
    return len(rows)


def load_athena(store: Store, folder: Path) -> dict[str, int]:
    """Load CONCEPT.csv and CONCEPT_RELATIONSHIP.csv from an Athena folder; reloads replace rows."""
    counts: dict[str, int] = {}
    concept_file = _find(folder, "CONCEPT.csv")
    if concept_file is None:
        raise FileNotFoundError(f"{folder}: no CONCEPT.csv (is this an Athena download folder?)")
    counts["concept"] = _load_table(store, concept, concept_file, ["concept_id"])
    relationship_file = _find(folder, "CONCEPT_RELATIONSHIP.csv")
    if relationship_file is not None:
        counts["concept_relationship"] = _load_table(
            store,
            concept_relationship,
            relationship_file,
            ["concept_id_1", "concept_id_2", "relationship_id"],
        )
    return counts
