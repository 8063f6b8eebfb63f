"""Hand-written labelled text: the notes pipeline measured on what the generator did not write."""

from __future__ import annotations

from pathlib import Path

from flip.data.notes.deid import Span
from flip.data.notes.score import read_marked

HERE = Path(__file__).parent


def uk_letters(name: str = "uk_letters.txt") -> list[tuple[str, list[Span]]]:
    """The documents of a marked letters file, each as (text, gold PHI spans)."""
    return read_marked(HERE / name)


def context_cases(name: str = "context.tsv") -> list[tuple[str, str, frozenset[str]]]:
    """The rows of a ConText file: (sentence, concept name, the categories of its mention)."""
    rows = []
    for line in (HERE / name).read_text(encoding="utf-8").splitlines():
        if line.startswith("#") or not line.strip():
            continue
        sentence, concept, categories = line.split("\t")
        rows.append((sentence, concept, frozenset(categories.split(",")) - {"-"}))
    return rows
