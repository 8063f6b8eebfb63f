"""Dermatology clinic letters, written the many ways clinicians write them, with every
piece of identifying text (PHI) labelled by its character span for measuring de-identification.

A letter carries real signal: the diagnosis, the scores, psoriatic arthritis affirmed or
negated ("no psoriatic arthritis"), family history, uncertainty ("?early PsA"), prior
biologics, BMI and smoking, in sections whose order, headings and abbreviations vary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np

from flip.synth.dermatology.cohort import Person, Visit

#: The PHI kinds a span may carry.
PHI_KINDS = ("NAME", "DATE", "NHS_NUMBER", "MRN", "PHONE", "ADDRESS", "POSTCODE")
_CLINICIANS = ("Dr A. Fairbairn", "Dr S. Iqbal", "Dr R. Lindqvist", "Dr M. Adeyemi", "Dr J. Hart")
_GPS = ("Dr P. Walsh", "Dr K. Rahman", "Dr L. Brennan", "Dr T. Osei")
_NAMES = {
    "psoriasis": "chronic plaque psoriasis",
    "eczema": "atopic eczema",
    "hs": "hidradenitis suppurativa",
}
_SHORT = {"psoriasis": "plaque psoriasis", "eczema": "AD", "hs": "HS"}


@dataclass
class Letter:
    """A letter's text and its PHI spans as (start, end, kind)."""

    text: str = ""
    spans: list[tuple[int, int, str]] = field(default_factory=list)

    def add(self, text: str) -> None:
        """Append plain text."""
        self.text += text

    def phi(self, text: str, kind: str) -> None:
        """Append identifying text and label its span."""
        self.spans.append((len(self.text), len(self.text) + len(text), kind))
        self.text += text


def _date(rng: np.random.Generator, day: date) -> str:
    style = int(rng.integers(4))
    if style == 0:
        return day.strftime("%d/%m/%Y")
    if style == 1:
        return f"{day.day} {day.strftime('%B %Y')}"
    if style == 2:
        return day.strftime("%d.%m.%y")
    return f"{day.day} {day.strftime('%b %Y')}"


def _nhs(rng: np.random.Generator, nhs: str) -> str:
    return f"{nhs[:3]} {nhs[3:6]} {nhs[6:]}" if rng.random() < 0.6 else nhs


def write_letter(rng: np.random.Generator, p: Person, visit: Visit, hospital: str) -> Letter:
    """The clinic letter of one visit."""
    out = Letter()
    clinician = str(rng.choice(_CLINICIANS))
    _header(rng, out, p, visit, hospital)
    sections = [_diagnosis, _history, _drugs, _family_social, _examination, _plan]
    order = [0, 1, 2, 3, 4, 5] if rng.random() < 0.6 else [0, 4, 1, 2, 3, 5]
    for i in order:
        sections[i](rng, out, p, visit)
    out.add("\nYours sincerely,\n\n")
    out.phi(clinician, "NAME")
    out.add(f"\nConsultant Dermatologist, {hospital}")
    return out


def _header(rng: np.random.Generator, out: Letter, p: Person, visit: Visit, hospital: str) -> None:
    out.add(f"{hospital} Dermatology Department\nClinic date: ")
    out.phi(_date(rng, visit.day), "DATE")
    out.add("\n\nDear ")
    out.phi(str(rng.choice(_GPS)), "NAME")
    out.add(",\n\nRe: ")
    if rng.random() < 0.5:
        out.phi(f"{p.given} {p.family}", "NAME")
    else:
        out.phi(f"{p.family.upper()}, {p.given}", "NAME")
    out.add("  DOB: ")
    out.phi(_date(rng, p.birth_date), "DATE")
    out.add("\nNHS No: " if rng.random() < 0.7 else "\nNHS number ")
    out.phi(_nhs(rng, p.nhs), "NHS_NUMBER")
    out.add("  Hosp No: ")
    out.phi(p.mrn, "MRN")
    out.add("\n")
    out.phi(f"{p.street}, {p.town}", "ADDRESS")
    out.add(" ")
    out.phi(p.postcode, "POSTCODE")
    if rng.random() < 0.6:
        out.add("  Tel: ")
        out.phi(p.phone, "PHONE")
    out.add("\n\n")


def _diagnosis(rng: np.random.Generator, out: Letter, p: Person, visit: Visit) -> None:
    head = str(rng.choice(("Diagnosis:", "Dx:", "DIAGNOSES")))
    lines = [f"1. {_NAMES[p.diagnosis].capitalize()}"]
    if p.diagnosis == "psoriasis":
        if p.psa:
            lines.append(str(rng.choice(("2. Psoriatic arthritis", "2. PsA (rheumatology f/u)"))))
        elif rng.random() < 0.15:
            lines.append("2. ?early psoriatic arthritis - possible, not confirmed")
    out.add(f"{head}\n" + "\n".join(lines) + "\n\n")


def _history(rng: np.random.Generator, out: Letter, p: Person, visit: Visit) -> None:
    out.add(str(rng.choice(("History:\n", "HPC: ", "I reviewed this patient today. "))))
    years = max(1, round((visit.day - p.diagnosed).days / 365.25))
    pronoun = "She" if p.sex == "female" else "He"
    out.add(f"{pronoun} has had {_SHORT[p.diagnosis]} for {years} years. ")
    if visit.week == 0:
        out.add(
            "Disease is poorly controlled on topicals. "
            if visit.activity > 0.3
            else "Disease has been moderately active. "
        )
    else:
        out.add(f"Seen at week {visit.week} of treatment. ")
        out.add("Much improved. " if visit.activity < 0.25 else "Only partial improvement. ")
    if p.diagnosis == "psoriasis" and not p.psa and "?early" not in out.text:
        out.add(
            str(
                rng.choice(
                    (
                        "No psoriatic arthritis. ",
                        "Denies joint pain or swelling. ",
                        "No features of PsA. ",
                        "No evidence of inflammatory arthritis. ",
                    )
                )
            )
        )
    if p.diagnosis == "psoriasis" and p.psa:
        out.add("Joint pain in the hands, known PsA. ")
    if rng.random() < 0.4:
        out.add("No nail involvement. " if rng.random() < 0.5 else "Nail pitting noted. ")
    if rng.random() < 0.3:
        out.add("Last reviewed on ")
        out.phi(_date(rng, p.diagnosed), "DATE")
        out.add(". ")
    out.add("\n\n")


def _drugs(rng: np.random.Generator, out: Letter, p: Person, visit: Visit) -> None:
    out.add(str(rng.choice(("Drug history: ", "DH: ", "Medications: "))))
    past = [t for t in p.treatments if t.end is not None]
    if past:
        names = ", ".join(t.drug for t in past)
        out.add(f"previously {names} (stopped, secondary failure). ")
    else:
        out.add("biologic naive. " if rng.random() < 0.5 else "no previous biologics. ")
    if visit.week > 0:
        out.add(f"Currently on {p.started}. ")
    out.add("\n\n")


def _family_social(rng: np.random.Generator, out: Letter, p: Person, visit: Visit) -> None:
    relative = str(rng.choice(("mother", "father", "sister", "brother")))
    if p.family_history:
        out.add(f"FH: {relative} has {_SHORT[p.diagnosis]}. ")
    else:
        out.add(str(rng.choice(("FH: nil. ", "No family history of skin disease. "))))
    out.add("SH: current smoker. " if p.smoker else "SH: non-smoker. ")
    out.add(f"BMI {p.bmi:.1f}.\n\n")


def _examination(rng: np.random.Generator, out: Letter, p: Person, visit: Visit) -> None:
    out.add(str(rng.choice(("On examination: ", "O/E: ", "Examination: "))))
    s = visit.scores
    if "pasi" in s:
        out.add(f"PASI {s['pasi']:.1f}, ")
    if "easi" in s:
        out.add(f"EASI {s['easi']:.1f}, ")
    out.add(f"IGA {int(s['iga'])}, DLQI {int(s['dlqi'])}. ")
    if p.diagnosis == "hs":
        out.add("Active nodules and draining tunnels in the axillae. ")
    elif visit.activity > 0.4:
        out.add("Thick, well-demarcated erythematous plaques with scale on the trunk and limbs. ")
    else:
        out.add("A few thin plaques, mild erythema. ")
    out.add("\n\n")


def _plan(rng: np.random.Generator, out: Letter, p: Person, visit: Visit) -> None:
    out.add(str(rng.choice(("Plan:\n", "Impression and plan: ", "PLAN\n"))))
    if visit.week == 0:
        out.add(f"Start {p.started}. Baseline bloods (FBC, U&E, LFT, CRP) taken. ")
    else:
        out.add(f"Continue {p.started}. ")
    out.add("Review in clinic ")
    if rng.random() < 0.5:
        out.add("on ")
        out.phi(_date(rng, visit.day + timedelta(weeks=13)), "DATE")
    else:
        out.add("in 3 months")
    out.add(". Patient can call the nurse line on ")
    out.phi(f"0113 496 0{int(rng.integers(0, 1000)):03d}", "PHONE")
    out.add(" with questions.\n")
