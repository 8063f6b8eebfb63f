"""Precision and recall of de-identification against labelled PHI spans.

A labelled span is recalled when every non-space character of it lies in some found span
(of any kind: what matters is that it is hidden). A found span is correct when it overlaps
some labelled span. Both are counted per kind: recall by the labelled kind, precision by
the found kind.

Labelled letters come as `letters_phi.jsonl` (from `flip synth dermatology`) or as text marked
by hand: "[[KIND|text]]" around each identifier, documents separated by a "====" line, and
lines starting "#" ignored, so a site can label a sample of its own letters and score them.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from flip.data.notes.deid import Span, find_phi

_MARK = re.compile(r"\[\[([A-Z_]+)\|(.+?)\]\]", re.DOTALL)


def parse_marked(marked: str) -> tuple[str, list[Span]]:
    """The plain text of `marked` and its labelled spans ("[[KIND|text]]" marks a span)."""
    text, spans, last = "", [], 0
    for m in _MARK.finditer(marked):
        text += marked[last : m.start()]
        spans.append(Span(len(text), len(text) + len(m.group(2)), m.group(1)))
        text += m.group(2)
        last = m.end()
    return text + marked[last:], spans


def read_marked(path: Path) -> list[tuple[str, list[Span]]]:
    """(text, labelled spans) of each "===="-separated document of a hand-marked text file."""
    raw = path.read_text(encoding="utf-8")
    body = "\n".join(line for line in raw.splitlines() if not line.startswith("#"))
    docs = [parse_marked(doc.strip("\n")) for doc in body.split("====") if doc.strip()]
    for number, (text, _) in enumerate(docs, 1):
        if "[[" in text:
            raise ValueError(f"{path}: document {number}: an unclosed [[KIND|text]] mark")
    return docs


def read_labelled(path: Path) -> list[tuple[str, list[Span]]]:
    """(text, labelled spans) of each letter of a `letters_phi.jsonl` or hand-marked file."""
    if path.suffix != ".jsonl":
        return read_marked(path)
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            row = json.loads(line)
            spans = [Span(s["start"], s["end"], s["kind"]) for s in row["phi"]]
            rows.append((row["text"], spans))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}:{number}: not a labelled letter ({exc})") from exc
    return rows


def score(labelled: Iterable[tuple[str, list[Span]]]) -> dict[str, dict[str, float]]:
    """Per kind and "ALL": precision, recall and the counts behind them."""
    hit, truth, right, found = Counter(), Counter(), Counter(), Counter()
    for text, spans in labelled:
        predicted = find_phi(text)
        hidden = {i for s in predicted for i in range(s.start, s.end)}
        for s in spans:
            chars = [i for i in range(s.start, s.end) if not text[i].isspace()]
            truth[s.kind] += 1
            hit[s.kind] += all(i in hidden for i in chars)
        for p in predicted:
            found[p.kind] += 1
            right[p.kind] += any(p.start < s.end and s.start < p.end for s in spans)
    kinds = sorted(set(truth) | set(found))
    out = {k: _figures(hit[k], truth[k], right[k], found[k]) for k in kinds}
    out["ALL"] = _figures(
        sum(hit.values()), sum(truth.values()), sum(right.values()), sum(found.values())
    )
    return out


def _figures(hit: int, truth: int, right: int, found: int) -> dict[str, float]:
    return {
        "recall": hit / truth if truth else 1.0,
        "precision": right / found if found else 1.0,
        "labelled": truth,
        "found": found,
    }
