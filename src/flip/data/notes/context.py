"""ConText (Harkema et al., 2009) by rules: is a mention negated, uncertain, about a relative,
or historical?

medspaCy would do this with spaCy, but on Python 3.11 medspacy 1.3.1 needs spaCy < 3.8,
which needs numpy < 2, and FLIP needs numpy 2; so this module implements the same
algorithm over its documented trigger terms: a trigger modifies the targets after it
("forward") or before it ("backward") within its sentence, up to a termination term
("but", "however", ...) or `MAX_SCOPE` words. Where trigger terms overlap, the longest wins,
so a pseudo-trigger ("no change in", "not only", "Sister Jones") or a longer phrase ("cannot
be ruled out": possible) silences the shorter trigger inside it ("no", "not", "sister",
"ruled out"). A trigger written "re:..." is a regular expression.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_SCOPE = 8

#: (category, direction, trigger phrases); directions: "forward", "backward", and "none" for
#: pseudo-triggers, which only silence the triggers inside them.
TRIGGERS: list[tuple[str, str, tuple[str, ...]]] = [
    ("negated", "forward", (
        "no", "not", "non", "denies", "denied", "without", "no evidence of", "no features of",
        "no signs of", "negative for", "free of", "absence of", "nil", "never had", "never",
    )),
    ("negated", "backward", ("ruled out", "excluded", "not seen", "absent", "unlikely")),
    ("possible", "forward", (
        "?", "possible", "probable", "suspected", "query", "likely", "cannot exclude",
        "cannot rule out", "can't rule out", "rule out", "r/o", "differential", "may have",
        "queried", "not necessarily", "not ruled out", "not excluded",
    )),
    ("possible", "backward", (
        "possible", "not confirmed", "suspected", "queried", "cannot be excluded",
        "cannot be ruled out", "can't be excluded", "can't be ruled out", "not excluded",
        "not ruled out", "not been excluded", "not been ruled out", "not yet excluded",
    )),
    ("family", "forward", (
        "fh", "family history of", "mother", "father", "sister", "brother", "son", "daughter",
        "aunt", "uncle", "grandmother", "grandfather", "cousin", "sibling", "parent",
    )),
    ("historical", "forward", (
        "history of", "previously", "past history of", "pmh", "previous", "resolved",
        "childhood", "ex", "former", "prior", r"re:\bin (?:19|20)\d\d\b",
    )),
    ("historical", "backward", (
        "in the past", "previously", "as a child", "resolved", r"re:\bin (?:19|20)\d\d\b",
    )),
    ("pseudo", "none", (
        "no change", "no change in", "no significant change", "no increase", "no increase in",
        "no further change", "not only", "not cause", "not certain if", "not certain whether",
        "without difficulty", "no significant increase", "ward sister", "staff nurse",
        r"re:(?-i:\bSister\s+[A-Z][a-z]+)",
    )),
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
    if words.startswith("re:"):
        return re.compile(words[3:], re.IGNORECASE)
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
    for category, direction, t_start, t_end in _triggers(text, s_start, s_end):
        if t_end <= start and direction == "forward":
            between = text[t_end:start]
        elif t_start >= end and direction == "backward":
            between = text[end:t_start]
        else:
            continue
        if len(between.split()) <= MAX_SCOPE and not _TERMINATION.search(between):
            found.add(category)
    found.discard("pseudo")
    return Context(**{c: True for c in found})


def _triggers(text: str, start: int, end: int) -> list[tuple[str, str, int, int]]:
    """The trigger matches in text[start:end], a match inside a longer one dropped."""
    matches = [
        (category, direction, m.start(), m.end())
        for category, direction, patterns in _COMPILED
        for pattern in patterns
        for m in pattern.finditer(text, start, end)
    ]
    return [
        t
        for t in matches
        if not any(o[2] <= t[2] and t[3] <= o[3] and (o[3] - o[2]) > (t[3] - t[2]) for o in matches)
    ]
