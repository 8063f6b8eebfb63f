"""The dermatology report's measures against values worked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from flip.demo.dermatology.bar import bar_figures, smallest_site
from flip.demo.dermatology.metrics import calibration, icc, mae, roc_points


def test_icc_is_one_for_agreement_and_falls_with_a_constant_offset():
    truth = np.array([2.0, 5.0, 9.0, 14.0, 20.0])
    assert icc(truth, truth) == pytest.approx(1.0)
    shifted = icc(truth + 5, truth)
    assert 0 < shifted < 1
    # Absolute agreement: an offset of 5 on these scores gives (by McGraw & Wong's ICC(A,1))
    # MSR = 2*var_rows, MSE = 0, MSC = 62.5 -> ICC = MSR / (MSR + 2*62.5/5).
    rows = np.stack([truth + 5, truth], 1).mean(1)
    msr = 2 * rows.var(ddof=1)
    assert shifted == pytest.approx(msr / (msr + 2 * 62.5 / 5))
    assert np.isnan(icc(truth[:1], truth[:1]))


def test_mae_roc_and_calibration():
    y = np.array([0.0, 0.0, 1.0, 1.0])
    p = np.array([0.1, 0.6, 0.4, 0.9])
    assert mae(p, y) == pytest.approx((0.1 + 0.6 + 0.6 + 0.1) / 4)
    fpr, tpr = roc_points(y, p)
    assert fpr.tolist() == [0.0, 0.0, 0.5, 0.5, 1.0]
    assert tpr.tolist() == [0.0, 0.5, 0.5, 1.0, 1.0]
    bins = calibration(y, p, bins=2)
    assert bins == [(pytest.approx(0.25), 0.5, 2), (pytest.approx(0.75), 0.5, 2)]


def test_bar_figures_name_the_smallest_site_and_each_gap():
    bio = {"mae": 2.0, "icc": 0.8, "n_test": 10}
    results = {
        "biomarker": {
            arm: {"a": dict(bio), "b": dict(bio, n_test=4, mae=3.0 if arm == "local" else 2.2)}
            for arm in ("local", "federated", "pooled")
        },
        "response": {
            arm: {"a": {"auroc": 0.8, "n_test": 9}, "b": {"auroc": 0.7, "n_test": 3}}
            for arm in ("local", "federated", "pooled")
        },
        "fairness": {},
        "bytes_per_round": {"lora": 10, "full": 1000},
    }
    assert smallest_site(results) == "b"
    lines = bar_figures(results)
    assert "federated MAE 2.200 vs local-only 3.000" in lines[0]
    assert "= 1.000 (bar: <= 1.10)" in lines[2]
    assert lines[-1].endswith("= 1.00% (bar: <= 5%)")
