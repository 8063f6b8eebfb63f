"""Hand-written labelled text: the notes pipeline measured on what the generator did not write."""

from __future__ import annotations

import re
from pathlib import Path

from flip.data.notes.deid import Span

HERE = Path(__file__).parent
_MARK = re.compile(r"\[\[([A-Z_]+)\|(.+?)\]\]", re.DOTALL)


def parse_marked(marked: str) -> tuple[str, list[Span]]:
    """The plain text of `marked` and its gold spans ("[[KIND|text]]" marks a span)."""
    text, spans, last = "", [], 0
    for m in _MARK.finditer(marked):
        text += marked[last : m.start()]
        spans.append(Span(len(text), len(text) + len(m.group(2)), m.group(1)))
        text += m.group(2)
        last = m.end()
    return text + marked[last:], spans


def uk_letters(name: str = "uk_letters.txt") -> list[tuple[str, list[Span]]]:
    """The documents of a marked letters file, each as (text, gold PHI spans)."""
    raw = (HERE / name).read_text(encoding="utf-8")
    body = "\n".join(line for line in raw.splitlines() if not line.startswith("#"))
    return [parse_marked(doc.strip("\n")) for doc in body.split("====") if doc.strip()]


def context_cases(name: str = "context.tsv") -> list[tuple[str, str, frozenset[str]]]:
    """The rows of a ConText file: (sentence, concept name, the categories of its mention)."""
    rows = []
    for line in (HERE / name).read_text(encoding="utf-8").splitlines():
        if line.startswith("#") or not line.strip():
            continue
        sentence, concept, categories = line.split("\t")
        rows.append((sentence, concept, frozenset(categories.split(",")) - {"-"}))
    return rows
