"""Connectors: each reads one kind of source into neutral records for the CDM writer."""

from flip.data.sources.records import Rejected, SourceEvent, SourcePerson, SourceRecord, SourceVisit

__all__ = ["Rejected", "SourceEvent", "SourcePerson", "SourceRecord", "SourceVisit"]
