"""Explain how one code maps: its source concept, the "Maps to" link, and where rows land."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from flip.data.cdm import schema
from flip.data.cdm.store import Store
from flip.data.terminology.vocabulary import Vocabulary, system_vocabulary


def _concept(store: Store, concept_id: int) -> dict[str, Any] | None:
    c = schema.concept
    columns = (
        c.c.concept_id,
        c.c.concept_name,
        c.c.domain_id,
        c.c.vocabulary_id,
        c.c.concept_code,
        c.c.standard_concept,
    )
    with store.connect() as conn:
        row = conn.execute(select(*columns).where(c.c.concept_id == concept_id)).first()
    return dict(row._mapping) if row else None


def explain(
    store: Store, system: str, code: str, vocabulary: Vocabulary | None = None
) -> dict[str, Any]:
    """A JSON-ready account of how (system, code) maps, and why."""
    vocab = vocabulary or Vocabulary.from_store(store)
    mapping = vocab.map(system, code)
    target = _concept(store, mapping.concept_id) if mapping.concept_id else None
    return {
        "system": system,
        "code": code,
        "vocabulary_id": system_vocabulary(system),
        "source_concept": _concept(store, mapping.source_concept_id)
        if mapping.source_concept_id
        else None,
        "standard_concept": target,
        "cdm_table": schema.DOMAIN_TABLES.get(mapping.domain_id or "") if target else None,
        "reason": mapping.reason,
    }
