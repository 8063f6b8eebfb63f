"""Dermatology clinic letters, written the many ways clinicians write them, with every
piece of identifying text (PHI) labelled by its character span for measuring de-identification.

Letters take the shapes of real NHS outpatient letters: a letterhead with the department's
address, phone, fax and email; the GP's address block; the patient's "Re:" block with phone
numbers in +44 (0) form and postcodes as typed (lower case, unspaced); names without a title
(a relative who came along, a signature "Jane Doe, Consultant Dermatologist", "dr smith");
dates as 2021/03/04, "Tuesday 4th March 2021", "4th of March 2021", 12-Mar-1995; a GP copy
line; and words that equal names but are not ("brown plaques", "Mark the", "rose-coloured").

A letter carries real signal: the diagnosis, the scores, psoriatic arthritis affirmed or
negated ("no psoriatic arthritis"), family history, uncertainty ("?early PsA", "psoriatic
arthritis cannot be excluded"), smoking ("never smoker", "ex-smoker"), prior
biologics, BMI and smoking, in sections whose order, headings and abbreviations vary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np

from flip.synth.dermatology.cohort import Person, Visit

#: The PHI kinds a span may carry.
PHI_KINDS = ("NAME", "DATE", "NHS_NUMBER", "MRN", "PHONE", "ADDRESS", "POSTCODE", "EMAIL")
_CLINICIANS = ("Dr A. Fairbairn", "Dr S. Iqbal", "Dr R. Lindqvist", "Dr M. Adeyemi", "Dr J. Hart")
#: Clinicians who sign without a title, and the role line after their name.
_SIGNERS = ("Helen Carter", "Ngozi Eze", "Jane Doe", "Rhys Pritchard", "Anjali Mehta")
_ROLES = ("Consultant Dermatologist", "Specialty Registrar in Dermatology", "Associate Specialist")
_GPS = ("Dr P. Walsh", "Dr K. Rahman", "Dr L. Brennan", "Dr T. Osei")
#: (practice, house number and street, town, postcode) of GP surgeries.
_PRACTICES = (
    ("Oakwood Surgery", "12 Oakwood Lane", "Leeds", "LS8 2QX"),
    ("The Grange Medical Centre", "1 High Street", "Wetherby", "LS22 6ZZ"),
    ("Moor Grange Practice", "45 Moor Grange View", "Leeds", "LS16 5ZZ"),
    ("Calder Health Centre", "3 Bridge Road", "Halifax", "HX1 4ZZ"),
)
#: (street, town, postcode) of the dermatology department.
_DEPARTMENTS = (
    ("Beckett Street", "Leeds", "LS9 7ZZ"),
    ("Chapeltown Road", "Leeds", "LS7 4ZZ"),
    ("Aberford Road", "Wakefield", "WF1 4ZZ"),
)
_RELATIVES = {"wife": "female", "husband": "male", "daughter": "female", "son": "male"}
_RELATIVE_NAMES = {
    "female": ("Susan", "Rose", "Grace", "Ewa", "Fatima", "Joanne"),
    "male": ("John", "Mark", "Raj", "Piotr", "Kwame", "David"),
}
_NURSES = ("Jones", "Hughes", "O'Neill", "Mensah")
_MONTH_NAMES = ("January", "March", "May", "June", "September", "November")
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


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _date(rng: np.random.Generator, day: date) -> str:
    style = int(rng.integers(8))
    if style == 0:
        return day.strftime("%d/%m/%Y")
    if style == 1:
        return f"{day.day} {day.strftime('%B %Y')}"
    if style == 2:
        return day.strftime("%d.%m.%y")
    if style == 3:
        return f"{day.day} {day.strftime('%b %Y')}"
    if style == 4:
        return day.strftime("%Y/%m/%d")
    if style == 5:
        return f"{day.strftime('%A')} {_ordinal(day.day)} {day.strftime('%B %Y')}"
    if style == 6:
        return f"{_ordinal(day.day)} of {day.strftime('%B %Y')}"
    return f"{day.day:02d}-{day.strftime('%b-%Y')}"


def _nhs(rng: np.random.Generator, nhs: str) -> str:
    style = rng.random()
    if style < 0.5:
        return f"{nhs[:3]} {nhs[3:6]} {nhs[6:]}"
    if style < 0.65:
        return f"{nhs[:3]}-{nhs[3:6]}-{nhs[6:]}"
    return nhs


def _postcode(rng: np.random.Generator, postcode: str) -> str:
    style = rng.random()
    if style < 0.15:
        return postcode.lower()
    if style < 0.3:
        return postcode.replace(" ", "")
    return postcode


def _phone(rng: np.random.Generator, phone: str) -> str:
    """A UK number as typed: as given, unspaced, or +44 with or without the bracketed 0."""
    national = phone.replace(" ", "")
    style = rng.random()
    if style < 0.2:
        return national
    if style < 0.4:
        return f"+44 (0){national[1:5]} {national[5:]}"
    if style < 0.5:
        return f"+44 {national[1:5]} {national[5:]}"
    return phone


def write_letter(rng: np.random.Generator, p: Person, visit: Visit, hospital: str) -> Letter:
    """The clinic letter of one visit."""
    out = Letter()
    clinician = str(rng.choice(_CLINICIANS))
    _header(rng, out, p, visit, hospital)
    sections = [_diagnosis, _history, _drugs, _family_social, _examination, _plan]
    order = [0, 1, 2, 3, 4, 5] if rng.random() < 0.6 else [0, 4, 1, 2, 3, 5]
    for i in order:
        sections[i](rng, out, p, visit)
    _signature(rng, out, clinician, hospital)
    return out


def _signature(rng: np.random.Generator, out: Letter, clinician: str, hospital: str) -> None:
    style = int(rng.integers(3))
    if style == 0:
        out.add("\nYours sincerely,\n\n")
        out.phi(clinician, "NAME")
        out.add(f"\nConsultant Dermatologist, {hospital}")
    elif style == 1:
        out.add(str(rng.choice(("\nWith best wishes\n\n", "\nKind regards,\n\n", "\n\n"))))
        out.phi(str(rng.choice(_SIGNERS)), "NAME")
        out.add(str(rng.choice((", ", "\n"))) + str(rng.choice(_ROLES)))
    else:
        out.add("\nDictated but not checked by ")
        out.phi(clinician, "NAME")
        out.add("\nSpecialty Registrar in Dermatology")
    if rng.random() < 0.5:
        practice, street, town, postcode = _PRACTICES[int(rng.integers(len(_PRACTICES)))]
        out.add("\ncc: ")
        out.phi(str(rng.choice(_GPS)), "NAME")
        out.add(f", GP, {practice}, ")
        out.phi(street, "ADDRESS")
        out.add(", ")
        out.phi(town, "ADDRESS")
        out.add(" ")
        out.phi(postcode, "POSTCODE")


def _letterhead(rng: np.random.Generator, out: Letter, hospital: str) -> None:
    street, town, postcode = _DEPARTMENTS[int(rng.integers(len(_DEPARTMENTS)))]
    out.add(f"Department of Dermatology\n{hospital}\n")
    out.phi(street, "ADDRESS")
    out.add("\n")
    out.phi(town, "ADDRESS")
    out.add(" ")
    out.phi(postcode, "POSTCODE")
    out.add("\nTel: ")
    out.phi(f"+44 (0)113 496 0{int(rng.integers(0, 1000)):03d}", "PHONE")
    out.add("  Fax: ")
    out.phi(f"0113 496 0{int(rng.integers(0, 1000)):03d}", "PHONE")
    out.add("\nEmail: ")
    out.phi(f"{hospital.split()[0].lower()}.dermatology@nhs.net", "EMAIL")
    out.add("\n\n")


def _gp_block(rng: np.random.Generator, out: Letter, gp: str) -> None:
    practice, street, town, postcode = _PRACTICES[int(rng.integers(len(_PRACTICES)))]
    out.add("PRIVATE AND CONFIDENTIAL\n")
    out.phi(gp, "NAME")
    out.add(f"\n{practice}\n")
    out.phi(street, "ADDRESS")
    out.add("\n")
    out.phi(town, "ADDRESS")
    out.add("\n")
    out.phi(postcode, "POSTCODE")
    out.add("\n\n")


def _header(rng: np.random.Generator, out: Letter, p: Person, visit: Visit, hospital: str) -> None:
    gp = str(rng.choice(_GPS))
    if rng.random() < 0.5:
        out.add(f"{hospital} Dermatology Department\nClinic date: ")
        out.phi(_date(rng, visit.day), "DATE")
        out.add("\n\n")
    else:
        _letterhead(rng, out, hospital)
        out.add("Dictated: ")
        out.phi(_date(rng, visit.day), "DATE")
        out.add("\n\n")
        _gp_block(rng, out, gp)
    out.add("Dear ")
    out.phi(gp, "NAME")
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
    out.phi(_postcode(rng, p.postcode), "POSTCODE")
    if rng.random() < 0.6:
        out.add(str(rng.choice(("  Tel: ", "  Mobile: ", "  Tel no. "))))
        out.phi(_phone(rng, p.phone), "PHONE")
    out.add("\n\n")


def _diagnosis(rng: np.random.Generator, out: Letter, p: Person, visit: Visit) -> None:
    head = str(rng.choice(("Diagnosis:", "Dx:", "DIAGNOSES")))
    lines = [f"1. {_NAMES[p.diagnosis].capitalize()}"]
    if p.diagnosis == "psoriasis":
        if p.psa:
            lines.append(str(rng.choice(("2. Psoriatic arthritis", "2. PsA (rheumatology f/u)"))))
        elif rng.random() < 0.15:
            lines.append(
                str(
                    rng.choice(
                        (
                            "2. ?early psoriatic arthritis - possible, not confirmed",
                            "2. Inflammatory joint pain: psoriatic arthritis cannot be excluded",
                        )
                    )
                )
            )
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
    uncertain = "?early" in out.text or "cannot be excluded" in out.text
    if p.diagnosis == "psoriasis" and not p.psa and not uncertain:
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
    if rng.random() < 0.3:
        out.add("Worse since ")
        out.phi(p.diagnosed.strftime("%B %Y"), "DATE")
        out.add(". ")
    if rng.random() < 0.5:
        _companion(rng, out, p)
    out.add("\n\n")


def _companion(rng: np.random.Generator, out: Letter, p: Person) -> None:
    """A relative who came along, named without a title, and sometimes the nurse."""
    relation = str(rng.choice(list(_RELATIVES)))
    given = str(rng.choice(_RELATIVE_NAMES[_RELATIVES[relation]]))
    if rng.random() < 0.5:
        out.add(f"Seen today with {'her' if p.sex == 'female' else 'his'} {relation}, ")
        out.phi(f"{given} {p.family}", "NAME")
        out.add(". ")
    else:
        out.add(f"{'Her' if p.sex == 'female' else 'His'} {relation} ")
        out.phi(given, "NAME")
        out.add(" came too. ")
    if rng.random() < 0.4:
        out.add("Sister ")
        out.phi(str(rng.choice(_NURSES)), "NAME")
        out.add(" gave injection training. ")


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
    if p.smoker:
        out.add(str(rng.choice(("SH: current smoker. ", "SH: smoker, 10 a day. "))))
    else:
        out.add(
            str(
                rng.choice(
                    ("SH: non-smoker. ", "SH: never smoker. ", "SH: ex-smoker, stopped in 2015. ")
                )
            )
        )
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
        out.add(
            str(
                rng.choice(
                    (
                        "Thick, well-demarcated erythematous plaques with scale on the trunk "
                        "and limbs. ",
                        "Thick, rose-coloured plaques with silvery scale on the trunk and limbs. ",
                    )
                )
            )
        )
    else:
        out.add("A few thin plaques, mild erythema, brown post-inflammatory pigmentation. ")
    if rng.random() < 0.3:
        out.add("Mark the most active plaque for medical photography. ")
    out.add("\n\n")


def _plan(rng: np.random.Generator, out: Letter, p: Person, visit: Visit) -> None:
    out.add(str(rng.choice(("Plan:\n", "Impression and plan: ", "PLAN\n"))))
    if visit.week == 0:
        out.add(f"Start {p.started}. Baseline bloods (FBC, U&E, LFT, CRP) taken. ")
    else:
        out.add(f"Continue {p.started}. ")
    out.add("Review in clinic ")
    style = rng.random()
    if style < 0.4:
        out.add("on ")
        out.phi(_date(rng, visit.day + timedelta(weeks=13)), "DATE")
    elif style < 0.6:
        out.add(f"in {rng.choice(_MONTH_NAMES)}")
    else:
        out.add("in 3 months")
    out.add(". Patient can call the nurse line on ")
    out.phi(f"0113 496 0{int(rng.integers(0, 1000)):03d}", "PHONE")
    out.add(" with questions.\n")
    if rng.random() < 0.1:
        out.add("Seen by ")
        out.phi(f"dr {str(rng.choice(_CLINICIANS)).split()[-1].lower()}", "NAME")
        out.add(" in the consultant's absence.\n")
