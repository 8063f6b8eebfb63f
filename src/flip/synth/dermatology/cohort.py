"""Seeded dermatology cohorts: one site's patients, their visits, labs, treatments and
photographs, drawn from one causal model that every site shares."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np

from flip.synth.dermatology import severity
from flip.synth.dermatology.sites import SiteSpec
from flip.synth.shapes import nhs_number

_GIVEN = {
    "female": ("Amelia", "Priya", "Grace", "Zainab", "Olivia", "Mei", "Chloe", "Aisha", "Ewa"),
    "male": ("Oliver", "Arjun", "Kwame", "Tomasz", "Harry", "Yusuf", "Liam", "Wei", "Daniel"),
}
_FAMILY = (
    "Okafor",
    "Smith",
    "Nguyen",
    "Patel",
    "Kowalski",
    "Garcia",
    "Haddad",
    "Jones",
    "Mbeki",
    "Osei",
    "Campbell",
    "Begum",
    "Murphy",
    "Chen",
    "Ahmed",
    "Taylor",
)
_STREETS = (
    "Mill Lane",
    "Church Road",
    "Victoria Street",
    "Park Avenue",
    "Station Road",
    "Queens Drive",
    "Elm Grove",
    "Kingsway",
    "Albert Terrace",
    "Harbour View",
)
_TOWNS = (
    ("Leeds", "LS"),
    ("Bradford", "BD"),
    ("York", "YO"),
    ("Harrogate", "HG"),
    ("Wakefield", "WF"),
    ("Halifax", "HX"),
)
#: Weeks at which a person is seen, and whether the visit always happens.
VISIT_WEEKS = ((0, True), (4, False), (16, True), (32, False))
BIOLOGICS = {
    "psoriasis": ("adalimumab", "ustekinumab", "secukinumab"),
    "eczema": ("dupilumab",),
    "hs": ("adalimumab",),
}
SYSTEMICS = {
    "psoriasis": ("methotrexate", "ciclosporin", "acitretin"),
    "eczema": ("methotrexate", "ciclosporin"),
    "hs": ("acitretin",),
}


@dataclass
class Visit:
    """One clinic visit: its week from baseline, the latent activity and the scores."""

    week: int
    day: date
    activity: float
    signs: severity.Signs
    scores: dict[str, float]


@dataclass
class Treatment:
    """A systemic or biologic treatment course."""

    drug: str
    start: date
    end: date | None


@dataclass
class Photo:
    """One clinical photograph: at which visit, of which region, and its serial."""

    visit: int
    region: int
    serial: int


@dataclass
class Person:
    """One synthetic dermatology patient, with the identifiers a letter must not leak."""

    serial: int
    mrn: str
    nhs: str
    given: str
    family: str
    sex: str
    birth_date: date
    street: str
    town: str
    postcode: str
    phone: str
    fitzpatrick: int
    diagnosis: str
    diagnosed: date
    psa: bool
    family_history: bool
    smoker: bool
    bmi: float
    prior_biologic: bool
    visits: list[Visit] = field(default_factory=list)
    labs: list[tuple[date, str, float]] = field(default_factory=list)
    treatments: list[Treatment] = field(default_factory=list)
    photos: list[Photo] = field(default_factory=list)
    started: str | None = None

    @property
    def baseline(self) -> Visit:
        """The week-0 visit."""
        return self.visits[0]

    @property
    def age(self) -> float:
        """Age in years at baseline."""
        return (self.baseline.day - self.birth_date).days / 365.25

    @property
    def pasi75(self) -> bool | None:
        """Whether PASI fell by at least 75% by week 16 (psoriasis only)."""
        if self.diagnosis != "psoriasis":
            return None
        week16 = next(v for v in self.visits if v.week == 16)
        return week16.scores["pasi"] <= 0.25 * self.baseline.scores["pasi"]


def draw_site(spec: SiteSpec, seed: int) -> list[Person]:
    """A site's people; the same spec and seed give the same people."""
    rng = np.random.default_rng([seed, *spec.name.encode()])
    people = [_person(rng, spec, i + 1) for i in range(spec.n_persons)]
    serial = 0
    for person in people:
        for photo in person.photos:
            serial += 1
            photo.serial = serial
    return people


def _person(rng: np.random.Generator, spec: SiteSpec, serial: int) -> Person:
    sex = "female" if rng.random() < 0.5 else "male"
    diagnosis = str(rng.choice(("psoriasis", "eczema", "hs"), p=spec.case_mix))
    age = float(np.clip(rng.normal(spec.age_mean - 12 * (diagnosis == "eczema"), 13), 18, 85))
    baseline = date(2019, 1, 7) + timedelta(days=int(rng.integers(0, 3 * 365)))
    town, area = _TOWNS[int(rng.integers(len(_TOWNS)))]
    person = Person(
        serial=serial,
        mrn=f"{spec.name[:3].upper()}{serial:06d}",
        nhs=nhs_number(spec.name, serial),
        given=str(rng.choice(_GIVEN[sex])),
        family=str(rng.choice(_FAMILY)),
        sex=sex,
        birth_date=baseline - timedelta(days=int(age * 365.25)),
        street=f"{int(rng.integers(1, 200))} {rng.choice(_STREETS)}",
        town=town,
        postcode=f"{area}{int(rng.integers(1, 30))} {int(rng.integers(1, 10))}"
        f"{''.join(rng.choice(list('ABDEFGHJLNPQRSTUWXYZ'), 2))}",
        phone=f"07700 900{int(rng.integers(0, 1000)):03d}",
        fitzpatrick=int(rng.choice(np.arange(1, 7), p=spec.fitzpatrick)),
        diagnosis=diagnosis,
        diagnosed=baseline - timedelta(days=int(rng.integers(200, int(age * 365.25) - 700))),
        psa=bool(diagnosis == "psoriasis" and rng.random() < 0.25),
        family_history=bool(rng.random() < 0.35),
        smoker=bool(rng.random() < spec.smoker_rate),
        bmi=float(np.round(np.clip(rng.normal(spec.bmi_mean, 5), 17, 50), 1)),
        prior_biologic=bool(rng.random() < spec.prior_biologic_rate),
    )
    _course(rng, person, baseline)
    return person


def _course(rng: np.random.Generator, p: Person, baseline: date) -> None:
    """Visits, labs, treatments and photographs, from baseline activity to week 32."""
    spread = np.clip(rng.normal(1.0, 0.15, 4), 0.6, 1.4)
    activity0 = float(np.clip(rng.beta(2.2, 3.0) + 0.05, 0.08, 1.0))
    crp = float(
        np.round(np.clip(rng.lognormal(1.2 + 1.2 * activity0 + 0.4 * p.psa, 0.5), 0.3, 150), 1)
    )
    biologic = activity0 > 0.3 or p.prior_biologic
    options = BIOLOGICS if biologic else SYSTEMICS
    p.started = str(rng.choice(options[p.diagnosis]))
    if p.prior_biologic:
        prior = "adalimumab" if p.started != "adalimumab" else "ustekinumab"
        if p.diagnosis == "eczema":
            prior = "ciclosporin"
        gone = baseline - timedelta(days=int(rng.integers(60, 700)))
        p.treatments.append(
            Treatment(prior, gone - timedelta(days=int(rng.integers(120, 900))), gone)
        )
    p.treatments.append(
        Treatment(p.started, baseline + timedelta(days=int(rng.integers(0, 8))), None)
    )
    s0 = severity.draw_signs(rng, activity0, spread)
    pasi0 = severity.pasi(s0)
    if p.diagnosis == "psoriasis" and biologic:
        logit = severity.response_logit(
            p.started,
            p.bmi,
            (baseline - p.birth_date).days / 365.25,
            p.psa,
            p.prior_biologic,
            crp,
            pasi0,
        )
        responds = bool(rng.random() < 1 / (1 + np.exp(-logit)))
    else:
        responds = bool(rng.random() < (0.55 if biologic else 0.3))
    drop = severity.improvement(rng, responds, not biologic)
    for week, always in VISIT_WEEKS:
        if not always and rng.random() < 0.5:
            continue
        day = baseline + timedelta(days=7 * week + int(rng.integers(-3, 4)) * (week > 0))
        share = min(week, 16) / 16
        activity = activity0 * (1 - drop * share) * (1 + (week > 16) * rng.normal(0, 0.08))
        signs = s0 if week == 0 else severity.draw_signs(rng, max(activity, 0.0), spread)
        scores = _scores(rng, p.diagnosis, signs, activity)
        p.visits.append(Visit(week, day, activity, signs, scores))
        p.labs.extend(_labs(rng, p, day, crp if week == 0 else crp * (1 - 0.6 * drop * share)))
        if p.diagnosis != "hs" and (week in (0, 16) or rng.random() < 0.3):
            region = int(rng.choice(4, p=[0.1, 0.25, 0.35, 0.3]))
            p.photos.append(Photo(len(p.visits) - 1, region, 0))


def _scores(rng: np.random.Generator, diagnosis: str, signs, activity: float) -> dict[str, float]:
    scores: dict[str, float] = {"dlqi": severity.dlqi(rng, activity), "iga": severity.iga(activity)}
    if diagnosis == "psoriasis":
        scores["pasi"] = severity.pasi(signs)
    elif diagnosis == "eczema":
        scores["easi"] = severity.easi(signs)
    return scores


def _labs(
    rng: np.random.Generator, p: Person, day: date, crp: float
) -> list[tuple[date, str, float]]:
    male = p.sex == "male"
    values = {
        "crp": round(max(0.3, crp * rng.lognormal(0, 0.15)), 1),
        "esr": round(float(np.clip(rng.normal(8 + 1.2 * crp**0.8, 5), 1, 120))),
        "wbc": round(float(rng.lognormal(1.9, 0.22)), 1),
        "haemoglobin": round(float(rng.normal(14.5 if male else 13.1, 1.1)), 1),
        "alt": round(float(rng.lognormal(3.0 + 0.01 * (p.bmi - 28), 0.35))),
        "creatinine": round(float(rng.normal(84 if male else 68, 14))),
        "bmi": round(p.bmi + float(rng.normal(0, 0.4)), 1),
    }
    return [(day, name, float(v)) for name, v in values.items()]
