"""Read back what a test stored, and write the files it ingests."""

from __future__ import annotations

from pathlib import Path

import orjson
from sqlalchemy import select

from flip.data.cdm import schema
from flip.data.cdm.store import Store


def rows(store: Store, table: str) -> list[dict]:
    """Every row of one CDM table, as dicts."""
    with store.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(schema.metadata.tables[table]))]


def write_ndjson(path: Path, resources: list[dict]) -> Path:
    """Write FHIR resources as NDJSON, one per line; return the path."""
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in resources))
    return path
