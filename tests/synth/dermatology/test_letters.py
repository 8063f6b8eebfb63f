"""Clinic letters: the labelled PHI spans are exact, and the letters carry clinical signal."""

from __future__ import annotations

import json

from flip.synth.dermatology.letters import PHI_KINDS


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
            uncertain = "?early psoriatic arthritis" in text
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
