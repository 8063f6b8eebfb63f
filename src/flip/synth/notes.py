"""Clinic letters for synthetic patients: free text that carries signal the tables do not.

Each patient gets one letter on their index date. It restates some coded facts
(smoking, diabetes) in varied words, adds everyday noise, and mentions exertional
chest pain or breathlessness more often in patients who go on to have an event
(prodromal angina), information no structured column holds.
"""

from __future__ import annotations

from datetime import date

import numpy as np

_SMOKER = (
    "Current smoker, about {n} cigarettes a day.",
    "Smokes {n} cigarettes daily and is not ready to stop.",
    "Still smoking, roughly {n} a day.",
)
_NON_SMOKER = (
    "Never smoked.",
    "Non-smoker.",
    "Ex-smoker, stopped {n} years ago.",
    "Lifelong non-smoker.",
)
_DIABETES = (
    "Known type 2 diabetes on metformin.",
    "Type 2 diabetes, diet controlled.",
    "Diabetic, reviewed in the diabetes clinic last year.",
)
_ANGINA = (
    "Reports chest tightness on exertion, relieved by rest.",
    "Describes central chest pain when climbing stairs.",
    "Intermittent chest discomfort walking uphill, settling within minutes.",
)
_BREATHLESS = (
    "Breathless after one flight of stairs.",
    "Increasing shortness of breath on exertion over recent months.",
)
_NO_SYMPTOMS = (
    "Denies chest pain.",
    "No exertional symptoms.",
    "No chest pain or breathlessness.",
    "Asymptomatic today.",
)
_NOISE = (
    "Walks the dog daily.",
    "Works as a teacher.",
    "Lives with partner.",
    "Retired, enjoys gardening.",
    "Drinks alcohol occasionally.",
    "Plays bowls at weekends.",
    "Sleeps well.",
    "Family history unremarkable.",
)
_PLAN = (
    "Plan: repeat bloods in six months.",
    "Plan: lifestyle advice given, review in a year.",
    "Plan: discussed statin therapy.",
    "Plan: home blood pressure readings and review.",
)

#: How often each symptom is mentioned, for patients with and without a later event.
ANGINA_RATE = {True: 0.5, False: 0.08}
BREATHLESS_RATE = {True: 0.3, False: 0.1}


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def clinic_letter(
    rng: np.random.Generator,
    *,
    age: int,
    sex: str,
    smoker: bool,
    diabetes: bool,
    event_later: bool,
    when: date,
) -> str:
    """One clinic letter; the same generator state gives the same text."""
    person = "man" if sex == "male" else "woman"
    lines = [
        f"Cardiovascular risk clinic, {when:%d %B %Y}.",
        f"Seen today: {age}-year-old {person}.",
        _pick(rng, _SMOKER if smoker else _NON_SMOKER).format(n=int(rng.integers(2, 30))),
    ]
    if diabetes:
        lines.append(_pick(rng, _DIABETES))
    symptoms = []
    if rng.random() < ANGINA_RATE[event_later]:
        symptoms.append(_pick(rng, _ANGINA))
    if rng.random() < BREATHLESS_RATE[event_later]:
        symptoms.append(_pick(rng, _BREATHLESS))
    lines += symptoms or [_pick(rng, _NO_SYMPTOMS)]
    lines += [_pick(rng, _NOISE) for _ in range(int(rng.integers(1, 3)))]
    lines.append(_pick(rng, _PLAN))
    return " ".join(lines)
