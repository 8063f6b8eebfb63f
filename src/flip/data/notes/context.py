"""ConText (Harkema et al., 2009) by rules: is a mention negated, uncertain, about a relative,
or historical?

medspaCy would do this with spaCy, but on Python 3.11 medspacy 1.3.1 needs spaCy < 3.8,
which needs numpy < 2, and FLIP needs numpy 2; so this module implements the same
algorithm over its documented trigger terms: a trigger modifies the targets after it
("forward") or before it ("backward") within its sentence, up to a termination term
("but", "however", ...) or `MAX_SCOPE` words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_SCOPE = 8

#: (category, direction, trigger phrases); directions: "forward", "backward".
TRIGGERS: list[tuple[str, str, tuple[str, ...]]] = [
    ("negated", "forward", (
        "no", "not", "non", "denies", "denied", "without", "no evidence of", "no features of",
        "no signs of", "negative for", "free of", "absence of", "nil", "never had",
    )),
    ("negated", "backward", ("ruled out", "excluded", "not seen", "absent", "unlikely")),
    ("possible", "forward", (
        "?", "possible", "probable", "suspected", "query", "likely", "cannot exclude",
        "rule out", "r/o", "differential", "may have", "queried",
    )),
    ("possible", "backward", ("possible", "not confirmed", "suspected", "queried")),
    ("family", "forward", (
        "fh", "family history of", "mother", "father", "sister", "brother", "son", "daughter",
        "aunt", "uncle", "grandmother", "grandfather", "cousin", "sibling", "parent",
    )),
    ("historical", "forward", (
        "history of", "previously", "past history of", "pmh", "previous", "resolved",
        "childhood",
    )),
    ("historical", "backward", ("in the past", "previously", "as a child", "resolved")),
    ("hypothetical", "forward", ("if", "should", "monitor for", "risk of", "in case of")),
]  # fmt: skip
TERMINATIONS = ("but", "however", "although", "though", "apart from", "except", "which", "aside")
_SENTENCE = re.compile(r"[^.;\n]+")


@dataclass(frozen=True)
class Context:
    """What ConText says of one mention."""

    negated: bool = False
    possible: bool = False
    family: bool = False
    historical: bool = False
    hypothetical: bool = False

    @property
    def exists(self) -> bool:
        """True when the mention asserts the concept of this patient, now or before."""
        return not (self.negated or self.possible or self.family or self.hypothetical)

    def modifiers(self) -> str:
        """The OMOP term_modifiers text, e.g. "negated=true,subject=family,..."."""
        return ",".join(
            (
                f"negated={str(self.negated).lower()}",
                f"subject={'family' if self.family else 'patient'}",
                f"certainty={'possible' if self.possible else 'definite'}",
                f"temporality={'historical' if self.historical else 'current'}",
                f"hypothetical={str(self.hypothetical).lower()}",
            )
        )


def _phrase(words: str) -> re.Pattern[str]:
    if words == "?":
        return re.compile(r"\?")
    return re.compile(rf"(?<![\w-])({re.escape(words)})(?![\w])", re.IGNORECASE)


_COMPILED = [(cat, d, [_phrase(t) for t in terms]) for cat, d, terms in TRIGGERS]
_TERMINATION = re.compile(
    r"(?<![\w])(" + "|".join(re.escape(t) for t in TERMINATIONS) + r")(?![\w])", re.IGNORECASE
)


def sentence_bounds(text: str, offset: int) -> tuple[int, int]:
    """The [start, end) of the sentence (split at . ; and line ends) holding `offset`."""
    for m in _SENTENCE.finditer(text):
        if m.start() <= offset < m.end():
            return m.start(), m.end()
    return offset, offset


def context_of(text: str, start: int, end: int) -> Context:
    """The ConText categories that reach the mention text[start:end]."""
    s_start, s_end = sentence_bounds(text, start)
    found: set[str] = set()
    for category, direction, patterns in _COMPILED:
        for pattern in patterns:
            for m in pattern.finditer(text, s_start, s_end):
                if m.end() <= start and direction == "forward":
                    between = text[m.end() : start]
                elif m.start() >= end and direction == "backward":
                    between = text[end : m.start()]
                else:
                    continue
                if len(between.split()) <= MAX_SCOPE and not _TERMINATION.search(between):
                    found.add(category)
    return Context(**{c: True for c in found})
