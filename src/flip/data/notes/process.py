"""Run de-identification and concept extraction over the store's notes into note_nlp.

Extraction reads the de-identified text, so every snippet written is free of the
identifiers found; offsets count characters of that de-identified text. A re-run
replaces this system's rows for the notes it processes, so it never duplicates them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import delete, func, select

from flip.data.cdm import schema
from flip.data.cdm.store import Store, bulk_insert
from flip.data.notes.deid import deidentify
from flip.data.notes.nlp import LEXICON, NLP_SYSTEM, note_nlp_rows


@dataclass(frozen=True)
class NotesReport:
    """What one run did: notes read, NOTE_NLP rows written, of which affirmed, unmapped."""

    notes: int
    rows: int
    affirmed: int
    unmapped: int


def concept_ids(store: Store) -> dict[str, int]:
    """SNOMED code -> standard concept id for the lexicon's codes found in the store."""
    c = schema.concept
    codes = [t.code for t in LEXICON]
    with store.connect() as conn:
        found = conn.execute(
            select(c.c.concept_code, c.c.concept_id).where(
                c.c.vocabulary_id == "SNOMED", c.c.concept_code.in_(codes)
            )
        ).all()
    return {code: concept_id for code, concept_id in found}


def process_notes(store: Store, today: date | None = None) -> NotesReport:
    """De-identify and extract every note of the store into note_nlp, in one transaction."""
    resolve = concept_ids(store).get
    today = today or date.today()
    n, nlp = schema.note, schema.note_nlp
    with store.begin() as conn:
        notes = conn.execute(select(n.c.note_id, n.c.note_text).order_by(n.c.note_id)).all()
        conn.execute(delete(nlp).where(nlp.c.nlp_system == NLP_SYSTEM))
        next_id = (conn.execute(select(func.max(nlp.c.note_nlp_id))).scalar() or 0) + 1
        rows = []
        for note_id, text in notes:
            rows += note_nlp_rows(note_id, deidentify(text or ""), resolve, today)
        for offset, row in enumerate(rows):
            row["note_nlp_id"] = next_id + offset
        bulk_insert(conn, nlp, rows)
    return NotesReport(
        notes=len(notes),
        rows=len(rows),
        affirmed=sum(r["term_exists"] == "Y" for r in rows),
        unmapped=sum(r["note_nlp_concept_id"] == 0 for r in rows),
    )
