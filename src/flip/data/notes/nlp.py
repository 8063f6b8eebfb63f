"""Concept extraction from notes into NOTE_NLP rows: a lexicon of terms, each with its context.

The lexicon names SNOMED CT codes; their OMOP concept ids come from the store's concept
table (a `resolve` callable), 0 where the site's vocabulary lacks them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from flip.data.notes.context import context_of

NLP_SYSTEM = "flip.notes lexicon+ConText rules 1"


@dataclass(frozen=True)
class Term:
    """One lexicon entry: the phrases that name a SNOMED CT concept."""

    code: str
    name: str
    phrases: tuple[str, ...]
    abbreviations: tuple[str, ...] = ()


#: Dermatology and common findings; abbreviations match case-sensitively.
LEXICON: tuple[Term, ...] = (
    Term("33339001", "Psoriatic arthritis", ("psoriatic arthritis", "psoriatic arthropathy"),
         ("PsA",)),
    Term("9014002", "Psoriasis", ("psoriasis", "plaque psoriasis", "chronic plaque psoriasis")),
    Term("24079001", "Atopic dermatitis", ("atopic eczema", "atopic dermatitis", "eczema"),
         ("AD",)),
    Term("59393003", "Hidradenitis suppurativa", ("hidradenitis suppurativa", "acne inversa"),
         ("HS",)),
    Term("57676002", "Joint pain", ("joint pain", "arthralgia", "painful joints")),
    Term("3723001", "Arthritis", ("inflammatory arthritis", "arthritis")),
    Term("77176002", "Smoker", ("smoker", "smokes", "smoking")),
    Term("44054006", "Type 2 diabetes mellitus", ("type 2 diabetes", "T2DM", "type II diabetes")),
    Term("59621000", "Essential hypertension", ("hypertension",), ("HTN",)),
)  # fmt: skip


def _pattern(term: Term) -> re.Pattern[str]:
    words = sorted(term.phrases, key=len, reverse=True)
    ci = "|".join(re.escape(w) for w in words)
    cs = "|".join(re.escape(a) for a in term.abbreviations)
    body = f"(?i:{ci})" + (f"|{cs}" if cs else "")
    return re.compile(rf"(?<![\w])(?:{body})(?![\w])")


_PATTERNS = [(term, _pattern(term)) for term in LEXICON]


@dataclass(frozen=True)
class Mention:
    """One concept mention in a note and what its context says."""

    start: int
    end: int
    text: str
    term: Term
    exists: bool
    modifiers: str
    historical: bool


def mentions(text: str) -> list[Mention]:
    """Every lexicon mention in `text` (longest first where they overlap), with context."""
    spans = []
    for term, pattern in _PATTERNS:
        spans += [(m.start(), m.end(), term) for m in pattern.finditer(text)]
    spans.sort(key=lambda s: (s[0], -(s[1] - s[0])))
    out: list[Mention] = []
    for start, end, term in spans:
        if out and start < out[-1].end:
            continue
        ctx = context_of(text, start, end)
        out.append(
            Mention(start, end, text[start:end], term, ctx.exists, ctx.modifiers(), ctx.historical)
        )
    return out


def note_nlp_rows(
    note_id: int, text: str, resolve: Callable[[str], int | None], today: date
) -> list[dict[str, object]]:
    """The NOTE_NLP rows of one note (without note_nlp_id); `resolve` maps a SNOMED code to a
    concept id (None or 0 when unknown)."""
    rows = []
    for m in mentions(text):
        rows.append(
            {
                "note_id": note_id,
                "snippet": text[max(0, m.start - 60) : m.end + 60][:250],
                "offset": str(m.start),
                "lexical_variant": m.text,
                "note_nlp_concept_id": resolve(m.term.code) or 0,
                "note_nlp_source_concept_id": 0,
                "nlp_system": NLP_SYSTEM,
                "nlp_date": today,
                "term_exists": "Y" if m.exists else "N",
                "term_temporal": "past" if m.historical else "present",
                "term_modifiers": m.modifiers,
            }
        )
    return rows
