"""OMOP CDM v5.4 schema, FLIP provenance tables, and the store that holds them."""

from flip.data.cdm.schema import metadata
from flip.data.cdm.store import Store, open_store

__all__ = ["Store", "metadata", "open_store"]
