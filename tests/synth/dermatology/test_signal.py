"""The world carries what its ground truth promises: severity is visible in the photographs,
and response to a biologic depends on baseline features."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import cross_val_predict

from flip.synth.dermatology.cohort import BIOLOGICS, draw_site
from flip.synth.dermatology.photos import PhotoSpec, render
from flip.synth.dermatology.sites import default_sites


def _colour_statistics(images: np.ndarray) -> np.ndarray:
    """Per image: how red, how varied, how much near-white scale; nothing learned."""
    r, g, b = (images[..., i].astype(np.float32) for i in range(3))
    redness = r - g
    base = np.median(redness.reshape(len(images), -1), axis=1)[:, None, None]
    return np.stack(
        [
            (redness > base + 25).mean(axis=(1, 2)),
            redness.std(axis=(1, 2)),
            redness.mean(axis=(1, 2)),
            g.std(axis=(1, 2)),
            (np.minimum(np.minimum(r, g), b) > 200).mean(axis=(1, 2)),
            r.mean(axis=(1, 2)),
            g.mean(axis=(1, 2)),
            b.mean(axis=(1, 2)),
        ],
        axis=1,
    )


def test_a_colour_statistics_regressor_reads_pasi_from_photographs():
    features, pasi = [], []
    for spec in default_sites(4):
        people = draw_site(replace(spec, n_persons=16), 3)
        shots = [(p, s) for p in people for s in p.photos if p.diagnosis == "psoriasis"]
        specs = []
        for p, shot in shots:
            signs, r = p.visits[shot.visit].signs, shot.region
            values = (signs.area[r], signs.erythema[r], signs.induration[r], signs.scaling[r])
            specs.append(PhotoSpec(p.fitzpatrick, False, *map(float, values)))
        features.append(_colour_statistics(render(np.random.default_rng(1), specs, spec.camera)))
        pasi += [p.visits[shot.visit].scores["pasi"] for p, shot in shots]
    x, y = np.concatenate(features), np.array(pasi)
    assert len(y) > 60
    predicted = cross_val_predict(RidgeCV(), x, y, cv=5)
    assert np.corrcoef(predicted, y)[0, 1] > 0.6


def test_baseline_features_predict_pasi75_on_a_biologic():
    rows, responded = [], []
    for spec in default_sites(2):
        for p in draw_site(replace(spec, n_persons=500), 0):
            if p.diagnosis != "psoriasis" or p.started not in BIOLOGICS["psoriasis"]:
                continue
            crp = next(v for _, name, v in p.labs if name == "crp")
            rows.append(
                [
                    p.bmi,
                    p.age,
                    p.psa,
                    p.prior_biologic,
                    crp,
                    p.baseline.scores["pasi"],
                    p.started == "secukinumab",
                    p.started == "ustekinumab",
                ]
            )
            responded.append(p.pasi75)
    x, y = np.array(rows, dtype=float), np.array(responded, dtype=int)
    assert 0.2 < y.mean() < 0.8
    half = len(y) // 2
    model = LogisticRegression(max_iter=1000).fit(x[:half], y[:half])
    assert roc_auc_score(y[half:], model.predict_proba(x[half:])[:, 1]) > 0.65
