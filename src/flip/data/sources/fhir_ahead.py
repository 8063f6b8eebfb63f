"""Read FHIR files in a child process that starts at once, before the caller imports more.

The child imports the FHIR models (fhir.resources, pydantic) itself: the caller, which
only maps and writes the records it is sent, never pays for them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from flip.data.sources.identity import PersonIdentity
from flip.data.sources.readahead import in_child, read_ahead_now
from flip.data.sources.records import SourceRecord


def read_path_ahead(
    path: Path, person_identifier: PersonIdentity | str | None = None
) -> Iterator[SourceRecord]:
    """`fhir.read_path` in a child process that starts now, so that reading and validating
    (most of a FHIR ingest) overlap whatever the caller does next (opening the store)."""
    return read_ahead_now(_read_path, path, person_identifier)


def _read_path(
    path: Path, person_identifier: PersonIdentity | str | None
) -> Iterator[SourceRecord]:
    from flip.data.sources.fhir import read_path

    return read_path(path, person_identifier)


def read_elsewhere(reading: Iterator[SourceRecord]) -> bool:
    """Whether `reading` (from `read_path_ahead`) is read in a child process: the FHIR models,
    pydantic and what they import are then never needed in this one."""
    return in_child(reading)
