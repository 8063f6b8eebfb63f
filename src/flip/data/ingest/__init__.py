"""Ingest a source into a store, in three stages: read, map, write.

- read: one reader per source kind (`flip.data.sources`) yields neutral source records;
- map (`convert`): codes to standard concepts, units, status rules, person identity and
  plausibility turn records into CDM rows, quarantine entries or skips by rule;
- write (`write`): each batch commits whole with its provenance and quarantine rows.

`Ingestor` runs one source system's records through map and write; `ingest_path` and
`ingest_fhir_server` pick the reader for a source kind.
"""

from flip.data.ingest.ingestor import Ingestor
from flip.data.ingest.report import (
    DEMOGRAPHICS_CONFLICT,
    OLDER_THAN_STORED,
    SAME_PERSON,
    SUPERSEDED,
    UNIT_UNREADABLE,
    IngestReport,
)
from flip.data.ingest.sources import ingest_fhir_server, ingest_path

__all__ = [
    "DEMOGRAPHICS_CONFLICT",
    "OLDER_THAN_STORED",
    "SAME_PERSON",
    "SUPERSEDED",
    "UNIT_UNREADABLE",
    "IngestReport",
    "Ingestor",
    "ingest_fhir_server",
    "ingest_path",
]
