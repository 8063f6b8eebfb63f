"""Connectors: each reads one kind of source into neutral records for the CDM writer."""

from flip.data.sources.records import (
    EventBlock,
    Rejected,
    SourceEvent,
    SourceMerge,
    SourcePerson,
    SourceRecord,
    SourceVisit,
)

__all__ = [
    "EventBlock",
    "Rejected",
    "SourceEvent",
    "SourceMerge",
    "SourcePerson",
    "SourceRecord",
    "SourceVisit",
]
