"""ConText on hand-written letter sentences: pseudo-negation, "cannot be excluded", "never
smoker", the nurse title "Sister", scope ends, historical mentions."""

from __future__ import annotations

import pytest

from flip.data.notes.context import Context
from flip.data.notes.nlp import mentions
from tests.data.notes.corpus import context_cases

CATEGORIES = ("negated", "possible", "family", "historical", "hypothetical")


def _categories(sentence: str, concept: str) -> frozenset[str]:
    found = [m for m in mentions(sentence) if m.term.name == concept]
    assert len(found) == 1, (sentence, found)
    mods = dict(part.split("=") for part in found[0].modifiers.split(","))
    ctx = Context(
        negated=mods["negated"] == "true",
        possible=mods["certainty"] == "possible",
        family=mods["subject"] == "family",
        historical=mods["temporality"] == "historical",
        hypothetical=mods["hypothetical"] == "true",
    )
    return frozenset(c for c in CATEGORIES if getattr(ctx, c))


@pytest.mark.parametrize(
    ("sentence", "concept", "gold"), context_cases() + context_cases("context_heldout.tsv")
)
def test_each_hand_written_sentence(sentence, concept, gold):
    assert _categories(sentence, concept) == gold


def test_precision_and_recall_per_category():
    cases = context_cases()
    assert len(cases) >= 30
    for category in CATEGORIES:
        predicted = [category in _categories(s, c) for s, c, _ in cases]
        truth = [category in gold for _, _, gold in cases]
        hits = sum(p and t for p, t in zip(predicted, truth, strict=True))
        assert hits == sum(truth) == sum(predicted), category
