"""Concept search for the cohort builder, over a vocabulary the hub's operator loads.

The hub holds no patient data and ships no vocabulary: its operator may start it with an
OHDSI Athena download, or a subset of one (`flip hub serve --vocabulary FOLDER`, the
folder's tab-separated CONCEPT.csv and, if there, CONCEPT_RELATIONSHIP.csv). Researchers
then find concepts by id, code or name. Standard and classification concepts are kept
(those are what the sites' cohort engine counts, with their descendants); a source code
(ICD-10, Read…) is kept as a way to the standard concept it "Maps to". The whole index
lives in memory, so load the vocabularies and domains researchers need, not all of Athena.
"""

from __future__ import annotations

import csv
import re
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass, replace
from itertools import accumulate
from pathlib import Path

#: The most concepts one search returns.
LIMIT = 25
#: The most names a search ranks: the shortest that hold every word.
CANDIDATES = 200


class VocabularyProblem(ValueError):
    """The vocabulary folder or its files cannot be read; the message says why."""


@dataclass(frozen=True)
class Concept:
    """A standard concept a criterion can name; `via` is the source code that led to it."""

    concept_id: int
    name: str
    domain: str
    vocabulary: str
    code: str
    via: str = ""


class ConceptIndex:
    """The loaded concepts, searched by id, code (exact, any case) or every word of a name."""

    def __init__(self, concepts: list[Concept], maps_to: dict[int, list[int]]) -> None:
        self._by_id = {c.concept_id: c for c in concepts}
        self._by_code: dict[str, list[Concept]] = {}
        for concept in concepts:
            self._by_code.setdefault(concept.code.casefold(), []).append(concept)
        self._maps_to = maps_to
        # "domain<TAB>name" shortest name first, one a line, in one string the regular
        # expression engine scans (a domain's search skips other lines at their first chars).
        self._ordered = sorted(concepts, key=lambda c: len(c.name))
        lines = [f"{_folded(c.domain)}\t{_folded(c.name)}" for c in self._ordered]
        self._names = "\n".join(lines)
        self._starts = [0, *accumulate(len(line) + 1 for line in lines[:-1])]

    def __len__(self) -> int:
        return len(self._by_id) - len(self._maps_to)

    def search(self, text: str, domain: str | None = None) -> list[Concept]:
        """The concepts `text` names (an id, a code, or words all in the name), standard
        ones only, at most LIMIT, best first; only those of `domain` when given."""
        words = text.casefold().split()
        if not words:
            return []
        whole = " ".join(words)
        found: dict[int, Concept] = {}
        hits: list[Concept] = []
        an_id = whole.isascii() and whole.isdigit()  # "²" is a digit to str, not to int()
        if an_id and int(whole) in self._by_id:
            hits.append(self._by_id[int(whole)])
        hits.extend(self._by_code.get(whole, []))
        if not (hits and an_id):
            hits.extend(self._named(_needed(words), domain, whole))
        for hit in hits:
            for concept in self._standard_for(hit):
                if (domain is None or concept.domain == domain) and concept.concept_id not in found:
                    found[concept.concept_id] = concept
            if len(found) >= LIMIT:
                break
        return list(found.values())[:LIMIT]

    def _named(self, words: list[str], domain: str | None, whole: str) -> list[Concept]:
        """The shortest CANDIDATES concepts (of `domain`) whose name holds every word, those
        that begin with `whole` first."""
        start = "[^\\t\\n]*" if domain is None else re.escape(_folded(domain))
        ahead = "".join(f"(?=[^\\n]*{re.escape(w)})" for w in words)
        pattern = re.compile(f"^{start}\\t{ahead}", re.M)
        kept: list[Concept] = []
        for match in pattern.finditer(self._names):
            concept = self._ordered[bisect_right(self._starts, match.start()) - 1]
            if domain is None or any(c.domain == domain for c in self._standard_for(concept)):
                kept.append(concept)
                if len(kept) >= CANDIDATES:
                    break
        return sorted(kept, key=lambda c: not _folded(c.name).startswith(whole))

    def _standard_for(self, concept: Concept) -> Iterator[Concept]:
        targets = self._maps_to.get(concept.concept_id)
        if targets is None:
            yield concept
            return
        via = f"{concept.vocabulary} {concept.code}"
        for target in targets:
            if (standard := self._by_id.get(target)) is not None:
                yield replace(standard, via=via)


def _needed(words: list[str]) -> list[str]:
    """The words a name must hold, less those held twice or inside another (a name that
    holds "heart" holds "ear"): each left is one more scan of every name."""
    unique = sorted(set(words), key=len, reverse=True)
    return [w for i, w in enumerate(unique) if not any(w in longer for longer in unique[:i])]


def _folded(name: str) -> str:
    """A name as searches compare it: case folded, its white space single spaces."""
    return " ".join(name.casefold().split())


def _rows(path: Path) -> Iterator[dict[str, str]]:
    """The rows of a tab-separated file by column name; a row cut short is a VocabularyProblem."""
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        for row in reader:
            if None in row.values():
                raise VocabularyProblem(
                    f"{path.name} line {reader.line_num}: fewer fields than its header"
                )
            yield row


def _maps_to(path: Path, concepts: dict[int, Concept], source: set[int]) -> dict[int, list[int]]:
    """Each source concept's standard concepts, by the "Maps to" rows of `path` if it exists."""
    found: dict[int, list[int]] = {}
    if not path.is_file():
        return found
    for row in _rows(path):
        one, two = int(row["concept_id_1"]), int(row["concept_id_2"])
        wanted = row["relationship_id"] == "Maps to" and not row.get("invalid_reason")
        if wanted and one in source and two in concepts and two not in source:
            found.setdefault(one, []).append(two)
    return found


def load_concepts(folder: Path) -> ConceptIndex:
    """The index of the valid standard and classification concepts in `folder`'s
    CONCEPT.csv, with the source concepts that map to them (CONCEPT_RELATIONSHIP.csv)."""
    concept_file = folder / "CONCEPT.csv"
    if not concept_file.is_file():
        raise VocabularyProblem(f"{folder}: no CONCEPT.csv (an Athena download's folder)")
    concepts: dict[int, Concept] = {}
    source: set[int] = set()
    try:
        for row in _rows(concept_file):
            if row.get("invalid_reason"):
                continue
            concept = Concept(
                int(row["concept_id"]),
                row["concept_name"],
                row["domain_id"],
                row["vocabulary_id"],
                row["concept_code"],
            )
            concepts[concept.concept_id] = concept
            if row["standard_concept"] not in ("S", "C"):
                source.add(concept.concept_id)
        maps_to = _maps_to(folder / "CONCEPT_RELATIONSHIP.csv", concepts, source)
    except (KeyError, ValueError, UnicodeDecodeError, csv.Error) as exc:
        raise VocabularyProblem(f"{folder}: not an Athena vocabulary ({exc})") from None
    kept = [c for c in concepts.values() if c.concept_id not in source or c.concept_id in maps_to]
    return ConceptIndex(kept, maps_to)
