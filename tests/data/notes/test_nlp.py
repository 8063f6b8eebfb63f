"""Concept extraction with ConText: on the seeded world's letters and on sentences written here."""

from __future__ import annotations

import json
from datetime import date

import pytest

from flip.data.notes.nlp import NLP_SYSTEM, mentions, note_nlp_rows


def _only(text: str, name: str):
    found = [m for m in mentions(text) if m.term.name == name]
    assert len(found) == 1, found
    return found[0]


@pytest.mark.parametrize(
    ("text", "exists", "modifier"),
    [
        ("No psoriatic arthritis.", False, "negated=true"),
        ("Denies joint pain or swelling.", False, "negated=true"),
        ("2. ?early psoriatic arthritis - possible, not confirmed", False, "certainty=possible"),
        ("FH: mother has psoriatic arthritis.", False, "subject=family"),
        ("History of psoriatic arthritis, now in remission.", True, "temporality=historical"),
        ("Joint pain in the hands, known PsA.", True, "negated=false"),
        ("No nail change but psoriatic arthritis in both knees.", True, "negated=false"),
    ],
)
def test_context_of_a_mention(text, exists, modifier):
    name = "Joint pain" if "joint pain" in text else "Psoriatic arthritis"
    m = _only(text, name)
    assert m.exists is exists
    assert modifier in m.modifiers


def test_non_smoker_is_negated_and_smoker_affirmed():
    assert not _only("SH: non-smoker.", "Smoker").exists
    assert _only("SH: current smoker.", "Smoker").exists


def test_letters_affirm_psoriatic_arthritis_exactly_for_patients_who_have_it(labelled_letters):
    """The generator writes PsA affirmed only for patients with it; ConText must agree."""
    checked = 0
    for path in labelled_letters:
        for line in path.read_text().splitlines():
            text = json.loads(line)["text"]
            found = [m for m in mentions(text) if m.term.name == "Psoriatic arthritis"]
            has_psa = "2. Psoriatic arthritis" in text or "2. PsA" in text
            assert any(m.exists for m in found) is has_psa, text
            checked += bool(found)
    assert checked > 20


def test_note_nlp_rows_carry_the_omop_fields():
    text = "Dx: psoriasis. FH: father has eczema."
    rows = note_nlp_rows(5, text, {"9014002": 140}.get, date(2026, 1, 2))
    by_variant = {r["lexical_variant"]: r for r in rows}
    assert by_variant["psoriasis"]["note_nlp_concept_id"] == 140
    assert by_variant["psoriasis"]["term_exists"] == "Y"
    assert by_variant["psoriasis"]["offset"] == "4"
    assert by_variant["eczema"]["term_exists"] == "N"
    assert "subject=family" in by_variant["eczema"]["term_modifiers"]
    assert by_variant["eczema"]["note_nlp_concept_id"] == 0
    assert all(r["nlp_system"] == NLP_SYSTEM and r["note_id"] == 5 for r in rows)
