"""A generative model of cardiovascular risk in several hospitals.

Every site shares one causal model of major adverse cardiovascular events (MACE:
myocardial infarction or ischaemic stroke) given risk factors, so pooling knowledge
helps; sites differ in size and case mix (age, smoking, obesity), so the data are not
identically distributed.

The model is one of proportional hazards: a patient's hazard is a Weibull baseline
times exp(risk score), the score being the log-odds of 5-year MACE, so the chance of
an event within 5 years is close to that log-odds' probability. Follow-up ends at the
study's end or earlier when the patient is lost to follow-up; an event after that is
never seen. Every patient's follow-up ends with a review visit (a heart rate taken),
so a patient without an event still has a censoring time in the record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np

from flip.synth.notes import clinic_letter
from flip.synth.shapes import Shapes

#: Laboratory and vital-sign measurements: name -> (LOINC code, unit, mean, sd).
#: The last nine carry no risk signal: realistic candidate predictors that let a
#: model trained on too few events overfit.
MEASUREMENTS: dict[str, tuple[str, str]] = {
    "sbp": ("8480-6", "mm[Hg]"),
    "dbp": ("8462-4", "mm[Hg]"),
    "total_chol": ("14647-2", "mmol/L"),
    # HDL as many labs send it: a [Mass/volume] code with a mmol/L value, stored converted to mg/dL.
    "hdl": ("2085-9", "mmol/L"),
    "bmi": ("39156-5", "kg/m2"),
    "hba1c": ("4548-4", "%"),
    "creatinine": ("14682-9", "umol/L"),
    "sodium": ("2951-2", "mmol/L"),
    "potassium": ("2823-3", "mmol/L"),
    "haemoglobin": ("718-7", "g/dL"),
    "alt": ("1742-6", "U/L"),
    "albumin": ("1751-7", "g/L"),
    "platelets": ("777-3", "10*3/uL"),
    "wbc": ("6690-2", "10*3/uL"),
    "bilirubin": ("14631-6", "umol/L"),
    # Taken at the review that ends follow-up, never at baseline.
    "heart_rate": ("8867-4", "/min"),
}

#: The demo world's exports also hold a few results no body can have (typing slips), which
#: its ingest quarantines.
DEMO_SHAPES = Shapes(implausible=0.003)

#: Diagnoses as SNOMED CT and ICD-10 codes.
CONDITIONS: dict[str, tuple[str, str]] = {
    "diabetes": ("44054006", "E11.9"),
    "hypertension": ("59621000", "I10"),
    "mi": ("22298006", "I21.9"),
    "stroke": ("432504007", "I63.9"),
}

SMOKER_SNOMED = "77176002"
#: LOINC document type of the clinic letters (Consult note).
CLINIC_NOTE_LOINC = "11488-4"

#: The horizon of the binary outcome (`Patient.mace`), in days.
HORIZON_DAYS = 5 * 365
#: The Weibull baseline of the event times: shape, and scale in days (the horizon, so that
#: exp(risk score) is the cumulative hazard at the horizon).
WEIBULL_SHAPE, WEIBULL_SCALE_DAYS = 1.3, float(HORIZON_DAYS)
#: Administrative censoring: the study's follow-up ends on this day.
STUDY_END = date(2022, 6, 30)
#: Mean time to loss to follow-up (exponential), in days: about 10% lost within 5 years.
MEAN_DAYS_TO_LOSS = 50 * 365.25


@dataclass(frozen=True)
class SiteProfile:
    """One hospital: its size, its case mix, the format it exports and the real-world
    shapes its export carries."""

    name: str
    n_patients: int
    export_format: str
    age_mean: float
    smoker_rate: float
    bmi_shift: float = 0.0
    missing_rate: float = 0.05
    shapes: Shapes = field(default_factory=Shapes)


@dataclass
class Patient:
    """One synthetic patient at their baseline (index) visit and after."""

    source_id: str
    birth_date: date
    sex: str
    index_date: date
    smoker: bool
    follow_up_end: date
    conditions: dict[str, date] = field(default_factory=dict)
    measurements: dict[str, float] = field(default_factory=dict)
    review: dict[str, float] = field(default_factory=dict)
    notes: list[tuple[date, str]] = field(default_factory=list)

    @property
    def mace(self) -> bool:
        """Whether an MI or stroke was seen within the 5-year horizon after the index date."""
        end = self.index_date + timedelta(days=HORIZON_DAYS)
        return any(
            k in self.conditions and self.index_date < self.conditions[k] <= end
            for k in ("mi", "stroke")
        )


_FORMATS = ("fhir-bundle", "csv", "fhir-ndjson")
_NAMES = ("st-aster", "northbridge", "riverside", "eastgate", "harbourview", "millbrook")


def default_profiles(n_sites: int) -> list[SiteProfile]:
    """Site profiles for a demo world: sizes fall site by site, the last is small."""
    if n_sites < 1:
        raise ValueError("a world needs at least one site")
    profiles = []
    for i in range(n_sites):
        last = i == n_sites - 1 and n_sites > 1
        name = _NAMES[i] if i < len(_NAMES) else f"site-{i + 1}"
        profiles.append(
            SiteProfile(
                name=name,
                n_patients=300 if last else max(900, 2400 - 700 * i),
                export_format=_FORMATS[i % len(_FORMATS)],
                age_mean=(50.0 if last else 60.0 - 4 * (i % 3)),
                smoker_rate=(0.30 if last else 0.15 + 0.05 * (i % 3)),
                bmi_shift=(1.5 if last else -0.5 * (i % 3)),
                shapes=DEMO_SHAPES,
            )
        )
    return profiles


def _event_days(rng: np.random.Generator, risk: float) -> float:
    """Days from the index date to a MACE under the shared proportional-hazards model:
    cumulative hazard (t / scale) ** shape * exp(risk)."""
    return WEIBULL_SCALE_DAYS * (rng.exponential() / np.exp(risk)) ** (1 / WEIBULL_SHAPE)


def _follow_up_days(rng: np.random.Generator, index_date: date) -> int:
    """Days of follow-up: to the study's end, or to loss to follow-up if that comes first
    (at least one day)."""
    lost = rng.exponential(MEAN_DAYS_TO_LOSS)
    return max(1, int(min(lost, (STUDY_END - index_date).days)))


def _mace_logit(age: float, male: bool, smoker: bool, diabetes: bool, m: dict[str, float]) -> float:
    """The shared causal model: log-odds of 5-year MACE given risk factors."""
    return (
        -2.6
        + 0.10 * (age - 55.0)
        + 0.7 * male
        + 1.1 * smoker
        + 1.0 * diabetes
        + 0.035 * (m["sbp"] - 130.0)
        + 0.5 * (m["total_chol"] - 5.2)
        - 1.4 * (m["hdl"] - 1.35)
        + 0.05 * (m["bmi"] - 27.0)
    )


def _draw_patient(rng: np.random.Generator, site: SiteProfile, serial: int) -> Patient:
    age = float(np.clip(rng.normal(site.age_mean, 10.0), 30.0, 88.0))
    male = bool(rng.random() < 0.5)
    smoker = bool(rng.random() < site.smoker_rate)
    index_date = date(2016, 1, 1) + timedelta(days=int(rng.integers(0, 3 * 365)))
    birth_date = index_date - timedelta(days=int(age * 365.25))
    bmi = float(rng.normal(27.0 + site.bmi_shift, 4.5))
    diabetes = bool(rng.random() < 1 / (1 + np.exp(-(-2.6 + 0.1 * (bmi - 27) + 0.03 * (age - 55)))))
    sbp = float(120 + 0.5 * (age - 50) + 0.8 * (bmi - 27) + rng.normal(0, 14))
    m = {
        "sbp": sbp,
        "dbp": float(0.55 * sbp + 10 + rng.normal(0, 7)),
        "total_chol": float(rng.normal(5.2, 1.0)),
        "hdl": float(max(0.5, rng.normal(1.45 - 0.2 * male, 0.35))),
        "bmi": bmi,
        "hba1c": float(5.3 + 1.7 * diabetes + rng.normal(0, 0.45)),
        "creatinine": float(rng.normal(85 if male else 70, 16)),
        "sodium": float(rng.normal(140, 2.5)),
        "potassium": float(rng.normal(4.3, 0.4)),
        "haemoglobin": float(rng.normal(14.5 if male else 13.2, 1.2)),
        "alt": float(rng.lognormal(3.1, 0.4)),
        "albumin": float(rng.normal(42, 3.5)),
        "platelets": float(rng.normal(260, 55)),
        "wbc": float(rng.lognormal(1.9, 0.25)),
        "bilirubin": float(rng.lognormal(2.2, 0.4)),
    }
    conditions: dict[str, date] = {}
    if diabetes:
        conditions["diabetes"] = index_date - timedelta(days=int(rng.integers(30, 3000)))
    if sbp > 140 and rng.random() < 0.8:
        conditions["hypertension"] = index_date - timedelta(days=int(rng.integers(30, 3000)))
    event_days = _event_days(rng, _mace_logit(age, male, smoker, diabetes, m))
    kind = "mi" if rng.random() < 0.6 else "stroke"
    follow_up = _follow_up_days(rng, index_date)
    if event_days <= follow_up:
        conditions[kind] = index_date + timedelta(days=max(1, int(event_days)))
    measured = {
        k: round(v, 1)
        for k, v in m.items()
        if k in ("sbp", "bmi") or rng.random() > site.missing_rate
    }
    return Patient(
        source_id=f"{site.name[:3].upper()}{serial:06d}",
        birth_date=birth_date,
        sex="male" if male else "female",
        index_date=index_date,
        smoker=smoker,
        follow_up_end=index_date + timedelta(days=follow_up),
        conditions=conditions,
        measurements=measured,
        review={"heart_rate": round(float(rng.normal(72, 11)), 1)},
    )


def generate_site(site: SiteProfile, seed: int) -> list[Patient]:
    """Draw a site's patients; the same profile and seed give the same patients.

    Clinic letters come from a generator of their own, so adding them left every
    other drawn value as it was.
    """
    rng = np.random.default_rng([seed, *site.name.encode()])
    patients = [_draw_patient(rng, site, i + 1) for i in range(site.n_patients)]
    letters = np.random.default_rng([seed, *site.name.encode(), *b"notes"])
    for p in patients:
        age = int((p.index_date - p.birth_date).days / 365.25)
        text = clinic_letter(
            letters,
            age=age,
            sex=p.sex,
            smoker=p.smoker,
            diabetes="diabetes" in p.conditions,
            event_later=p.mace,
            when=p.index_date,
        )
        p.notes.append((p.index_date, text))
    return patients
