"""Real-world shapes an export carries, how often, and what an ingest must make of them.

Hospital exports are not tidy: results carry times of day (and, in FHIR, zones),
spreadsheets write dates without zero padding, labs censor values at a detection
limit (`<5`), records that are not facts travel beside facts (refuted diagnoses,
results entered in error, cancelled orders), reports group results into panels,
a patient is sent twice. Each shape is drawn per patient from a generator of its
own, so the patients themselves never change, and every writer records in a
`Truth` what a faithful ingest must do with what it wrote.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, time

import numpy as np

#: What FHIR says a record that is not a fact is skipped under, by the reader's rules.
NOT_FACT_RULES = {
    "refuted": "fhir.verification.refuted",
    "condition-entered-in-error": "fhir.status.entered_in_error",
    "entered-in-error": "fhir.status.entered_in_error",
    "cancelled": "fhir.status.cancelled",
}
#: Total bilirubin below this many umol/L is reported as `<5`, as many labs do.
BILIRUBIN_LIMIT = 5.0
SUPERSEDED = "identity.superseded_in_run"
SAME_PERSON = "person.identifier.known"
IMPLAUSIBLE_RULE = "plausibility.value_range"


@dataclass(frozen=True)
class Shapes:
    """How often each real-world shape appears, per patient; 0 (or False) turns it off.

    `implausible` and `duplicate_identity` are off by default: the first adds quarantined
    records, the second a person per duplicate unless the ingest names the identifier
    system (`Truth.person_identifier`) that makes two Patient resources one person.
    """

    times: float = 0.85
    unpadded: float = 0.3
    detection_limits: bool = True
    not_facts: float = 0.03
    panels: float = 0.5
    resent: float = 0.01
    messy_headers: bool = True
    null_strings: bool = True
    implausible: float = 0.0
    duplicate_identity: float = 0.0

    @classmethod
    def none(cls) -> Shapes:
        """A tidy export: dates only, zero-padded, no shape at all."""
        return cls(0.0, 0.0, False, 0.0, 0.0, 0.0, False, False, 0.0, 0.0)


@dataclass(frozen=True)
class PatientShapes:
    """The shapes one patient's records carry in an export."""

    at: time | None = None
    zone: str = "Z"
    padded: bool = True
    stamp: str = "space"
    not_fact: str | None = None
    panel: bool = False
    resent: bool = False
    implausible: bool = False
    duplicate: bool = False


TIDY = PatientShapes()
_STAMPS = ("space", "iso", "unpadded")
_NOT_FACTS = tuple(NOT_FACT_RULES)


def plan_patient(shapes: Shapes, site: str, serial: int, when: date, seed: int) -> PatientShapes:
    """One patient's shapes, drawn from a generator of its own (site, serial, seed)."""
    rng = np.random.default_rng([seed, serial, *site.encode(), *b"shapes"])
    draws = rng.random(8)
    at = None
    if draws[0] < shapes.times:
        at = time(int(rng.integers(8, 18)), int(rng.integers(0, 60)), int(rng.integers(0, 60)))
    summer = 4 <= when.month <= 10
    zone = ("+01:00" if summer else "+00:00") if draws[1] < 0.5 else "Z"
    return PatientShapes(
        at=at,
        zone=zone,
        padded=not draws[2] < shapes.unpadded,
        stamp=_STAMPS[int(rng.integers(len(_STAMPS)))],
        not_fact=_NOT_FACTS[int(rng.integers(len(_NOT_FACTS)))]
        if draws[3] < shapes.not_facts
        else None,
        panel=bool(draws[4] < shapes.panels),
        resent=bool(draws[5] < shapes.resent),
        implausible=bool(draws[6] < shapes.implausible),
        duplicate=bool(draws[7] < shapes.duplicate_identity),
    )


def censored(name: str, value: float, shapes: Shapes) -> tuple[str | None, float]:
    """(comparator, value) as the lab reports it: below a detection limit, `<` the limit."""
    if shapes.detection_limits and name == "bilirubin" and value < BILIRUBIN_LIMIT:
        return "<", BILIRUBIN_LIMIT
    return None, value


def day(when: date, padded: bool) -> str:
    """A d/m/Y date as a spreadsheet writes it: `09/01/2017`, or `9/1/2017` unpadded."""
    if padded:
        return when.strftime("%d/%m/%Y")
    return f"{when.day}/{when.month}/{when.year}"


def stamp(moment: datetime, style: str) -> str:
    """A datetime as an extract writes it: `2017-01-09 09:30`, ISO `T` with seconds, or
    `2017-1-9 9:30` unpadded."""
    if style == "iso":
        return moment.strftime("%Y-%m-%dT%H:%M:%S")
    if style == "unpadded":
        return f"{moment.year}-{moment.month}-{moment.day} {moment.hour}:{moment.minute:02d}"
    return moment.strftime("%Y-%m-%d %H:%M")


def nhs_number(site: str, serial: int) -> str:
    """A test NHS number (999 and six digits, never issued to anyone) with a valid modulus-11
    check digit; a check of 10 moves the ninth digit on (serials step by 7, so it lands on
    no other serial's number)."""
    digits = [int(c) for c in f"999{(sum(site.encode()) * 7919 + 7 * serial) % 10**6:06d}"]
    while True:
        check = 11 - sum(d * w for d, w in zip(digits, range(10, 1, -1), strict=True)) % 11
        if check != 10:
            return "".join(map(str, digits)) + str(check % 11)
        digits[-1] = (digits[-1] + 1) % 10


@dataclass
class Truth:
    """What a faithful ingest of an export does with the shapes it holds.

    Keys are record keys as the readers name them (`Observation/ID`, `labs.csv/ID`).
    `person_identifier` is the identifier system (FHIR) that makes the `duplicates`
    (second Patient ids sharing a patient's MRN) one person with the first; `resent` counts
    records sent twice under one id. `skipped` holds the rules that do not depend on it.
    """

    persons: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    quarantined: Counter[str] = field(default_factory=Counter)
    operators: dict[str, str] = field(default_factory=dict)
    times: dict[str, datetime] = field(default_factory=dict)
    person_identifier: str | None = None
    resent: int = 0
    duplicates: int = 0

    def skipped_rules(self, by_identifier: bool = False) -> Counter[str]:
        """Records skipped, per rule, by an ingest with (or without) `person_identifier`.

        With it, a Patient sent again is a person already known; without it, a record
        its own later copy supersedes, and each duplicate Patient id a person of its own."""
        out = Counter(self.skipped)
        identified = by_identifier and self.person_identifier is not None
        if self.resent:
            out[SAME_PERSON if identified else SUPERSEDED] += self.resent
        if self.duplicates and identified:
            out[SAME_PERSON] += self.duplicates
        return out

    def persons_loaded(self, by_identifier: bool = False) -> int:
        """Persons the ingest stores: one per patient, plus each duplicate Patient id when
        the ingest does not tell people apart by `person_identifier`."""
        identified = by_identifier and self.person_identifier is not None
        return self.persons + (0 if identified else self.duplicates)
