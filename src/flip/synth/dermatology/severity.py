"""Severity: a latent disease activity drawn per visit, the clinician scores it yields, and
the week-16 response to a biologic that baseline features drive.

Every score is computed from the same per-region signs that the photographs draw, so a
photograph carries the score: PASI sums, over head, arms, trunk and legs (weights 0.1,
0.2, 0.3, 0.4), (erythema + induration + scaling, each 0-4) x the area score (0-6).
EASI does the same with four signs of 0-3.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

REGIONS = ("head", "arms", "trunk", "legs")
WEIGHTS = np.array([0.1, 0.2, 0.3, 0.4])
#: How much the treatment a person starts lowers the odds of PASI75 at week 16 (log-odds).
DRUG_EFFECT = {"adalimumab": 0.0, "ustekinumab": 0.35, "secukinumab": 0.8}


@dataclass(frozen=True)
class Signs:
    """One visit's per-region signs: area (% of the region), erythema, induration, scaling."""

    area: np.ndarray
    erythema: np.ndarray
    induration: np.ndarray
    scaling: np.ndarray


def area_score(percent: np.ndarray) -> np.ndarray:
    """PASI's 0-6 area score of a region's involved percentage."""
    return np.digitize(percent, [0.0001, 10, 30, 50, 70, 90]).astype(float)


def draw_signs(rng: np.random.Generator, activity: float, spread: np.ndarray) -> Signs:
    """The signs of one visit at latent `activity` (0-1); `spread` is the person's fixed
    share of disease per region (four values around 1)."""
    level = activity * spread
    area = np.clip(100 * level**1.3 * 0.55 + rng.normal(0, 3, 4), 0, 100)
    signs = [np.clip(4.2 * level**0.6 + rng.normal(0, 0.35, 4), 0, 4) for _ in range(3)]
    return Signs(area, *(np.round(s * 2) / 2 for s in signs))


def pasi(s: Signs) -> float:
    """PASI (0-72) of one visit's signs."""
    total = (s.erythema + s.induration + s.scaling) * area_score(s.area)
    return float(np.round(np.sum(WEIGHTS * total), 1))


def easi(s: Signs) -> float:
    """EASI (0-72): erythema, oedema (induration), excoriation and lichenification (scaling),
    each rescaled to 0-3."""
    signs = 0.75 * (s.erythema + s.induration + 2 * s.scaling)
    return float(np.round(np.sum(WEIGHTS * signs * area_score(s.area)), 1))


def iga(activity: float) -> int:
    """Investigator Global Assessment (0 clear to 4 severe)."""
    return int(np.clip(np.round(activity * 4.6 - 0.2), 0, 4))


def dlqi(rng: np.random.Generator, activity: float) -> int:
    """Dermatology Life Quality Index (0-30): follows activity, with the person's own weight."""
    return int(np.clip(np.round(28 * activity**0.8 + rng.normal(0, 3)), 0, 30))


def response_logit(
    drug: str, bmi: float, age: float, psa: bool, prior_biologic: bool, crp: float, pasi0: float
) -> float:
    """The shared causal model: log-odds of PASI75 at week 16 on a biologic, from baseline."""
    return (
        0.55
        + DRUG_EFFECT.get(drug, 0.0)
        - 0.14 * (bmi - 28.0)
        - 0.02 * (age - 45.0)
        - 1.1 * psa
        - 1.3 * prior_biologic
        - 0.06 * (crp - 5.0)
        + 0.02 * (pasi0 - 15.0)
    )


def improvement(rng: np.random.Generator, responds: bool, systemic: bool) -> float:
    """How far activity falls by week 16: far for a responder, little otherwise."""
    if responds:
        return float(rng.uniform(0.6, 0.97))
    return float(rng.uniform(0.0, 0.35) if not systemic else rng.uniform(0.05, 0.45))
