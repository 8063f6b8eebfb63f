"""Clinic letters: the labelled PHI spans are exact, and the letters carry clinical signal."""

from __future__ import annotations

import json

from flip.data.notes.nlp import mentions
from flip.synth.dermatology.letters import PHI_KINDS

UNCERTAIN_PSA = ("?early psoriatic arthritis", "psoriatic arthritis cannot be excluded")


def _letters(out, site):
    lines = (out / "truth" / site / "letters_phi.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_every_phi_span_is_exact_and_the_identifiers_are_labelled(tiny_world):
    out, written = tiny_world
    for w in written:
        for letter in _letters(out, w.spec.name):
            text, spans = letter["text"], letter["phi"]
            assert {s["kind"] for s in spans} <= set(PHI_KINDS)
            for s in spans:
                assert text[s["start"] : s["end"]] == s["text"]
            assert {"NAME", "DATE", "NHS_NUMBER", "MRN", "POSTCODE"} <= {s["kind"] for s in spans}
            mrns = [s["text"] for s in spans if s["kind"] == "MRN"]
            assert mrns == [letter["person"]]


def test_letters_say_what_the_record_says(tiny_world):
    out, _ = tiny_world
    persons = {}
    for line in (out / "truth" / "st-aster" / "persons.csv").read_text().splitlines()[1:]:
        cells = line.split(",")
        persons[cells[0]] = {"diagnosis": cells[1], "psa": cells[7] == "1"}
    for letter in _letters(out, "st-aster"):
        person, text = persons[letter["person"]], letter["text"]
        if person["diagnosis"] == "psoriasis":
            assert "PASI" in text
            negated = any(
                phrase in text
                for phrase in (
                    "No psoriatic arthritis",
                    "Denies joint pain",
                    "No features of PsA",
                    "No evidence of inflammatory arthritis",
                )
            )
            uncertain = any(phrase in text for phrase in UNCERTAIN_PSA)
            assert negated == (not person["psa"] and not uncertain)
            assert not (uncertain and person["psa"])
        if person["diagnosis"] == "eczema":
            assert "EASI" in text


def test_a_visit_on_29_february_gets_its_letter():
    """A leap-day visit once crashed the letter's review date (`replace(year=+1)`)."""
    from dataclasses import replace
    from datetime import date

    import numpy as np

    from flip.synth.dermatology.cohort import draw_site
    from flip.synth.dermatology.letters import write_letter
    from flip.synth.dermatology.sites import default_sites

    person = next(p for p in draw_site(default_sites(1)[0], seed=3) if p.visits)
    visit = replace(person.visits[0], day=date(2024, 2, 29))
    for seed in range(8):
        letter = write_letter(np.random.default_rng(seed), person, visit, "St Aster")
        assert "Review in clinic" in letter.text
        assert all(letter.text[a:b] for a, b, _ in letter.spans)


def _many_letters(n: int = 300):
    import numpy as np

    from flip.synth.dermatology.cohort import draw_site
    from flip.synth.dermatology.letters import write_letter
    from flip.synth.dermatology.sites import default_sites

    people = [p for p in draw_site(default_sites(1)[0], seed=5) if p.visits]
    rng = np.random.default_rng(11)
    return [write_letter(rng, p, p.visits[0], "St Aster Hospital") for p in people[:n]]


def test_letters_carry_the_shapes_of_real_nhs_letters():
    """Phone, postcode, name, date and identifier shapes a review found the rules leaked."""
    import re

    letters = _many_letters()
    phi = [(kind, letter.text[a:b]) for letter in letters for a, b, kind in letter.spans]
    texts = {kind: [t for k, t in phi if k == kind] for kind in PHI_KINDS}
    assert any(t.startswith("+44 (0)") for t in texts["PHONE"])
    assert any(t == t.lower() for t in texts["POSTCODE"])
    assert any(" " not in t for t in texts["POSTCODE"])
    assert any(re.fullmatch(r"\d{4}/\d\d/\d\d", t) for t in texts["DATE"])
    assert any(
        re.match(r"(Mon|Tues|Wednes|Thurs|Fri)day \d+(st|nd|rd|th)", t) for t in texts["DATE"]
    )
    assert any(" of " in t for t in texts["DATE"])
    assert any("-" in t for t in texts["NHS_NUMBER"])
    assert texts["EMAIL"]
    untitled = [t for t in texts["NAME"] if not re.match(r"(Dr|Mr|Mrs|Ms|Sister|dr) ", t)]
    assert len(untitled) > len(letters) // 2
    assert any(t.startswith("dr ") for t in texts["NAME"])
    assert any(re.fullmatch(r"[A-Z][a-z]+ (Road|Street|Lane|Avenue)", t) for t in texts["ADDRESS"])
    text = "\n".join(letter.text for letter in letters)
    for trap in ("rose-coloured", "brown", "Mark the", "Sister "):
        assert trap in text, trap


def test_context_reads_smoking_and_uncertain_arthritis_as_the_record_says(tiny_world):
    """'never smoker' and 'ex-smoker' are not current smoking; 'cannot be excluded' is not PsA."""
    out, written = tiny_world
    sites = [w.spec.name for w in written]
    persons = {}
    for site in sites:
        for line in (out / "truth" / site / "persons.csv").read_text().splitlines()[1:]:
            cells = line.split(",")
            persons[cells[0]] = {"smoker": cells[6] == "1", "psa": cells[7] == "1"}
    phrases = set()
    for letter in (letter for site in sites for letter in _letters(out, site)):
        person, text = persons[letter["person"]], letter["text"]
        smoking = [m for m in mentions(text) if m.term.name == "Smoker"]
        current = any(m.exists and "temporality=current" in m.modifiers for m in smoking)
        assert current == person["smoker"], text
        psa = [m for m in mentions(text) if m.term.name == "Psoriatic arthritis"]
        assert any(m.exists for m in psa) == person["psa"], text
        phrases |= {p for p in ("never smoker", "ex-smoker", "cannot be excluded") if p in text}
    assert phrases == {"never smoker", "ex-smoker", "cannot be excluded"}
