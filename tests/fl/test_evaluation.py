"""Honest evaluation of file experiments: a validation split for model selection, and
bootstrap confidence intervals on every reported metric."""

import numpy as np
import pytest

from flip.fl.bootstrap import intervals
from flip.fl.experiment import ExperimentOptions, prepare
from flip.fl.tasks import binary
from tests.fl.messy import write_sites


def test_the_95_percent_interval_covers_the_true_accuracy_about_95_times_in_100():
    rng = np.random.default_rng(1)
    covered = 0
    trials = 200
    for trial in range(trials):
        y = rng.integers(0, 2, 150).astype(np.float32)
        right = rng.random(150) < 0.8  # a classifier right 80% of the time
        p = np.where(right, y, 1 - y) * 0.6 + 0.2
        low, high = intervals(y, p, seed=trial, resamples=400)["accuracy_ci"]
        covered += low <= 0.8 <= high
    assert 0.89 <= covered / trials <= 0.99


def test_intervals_hold_the_estimate_narrow_with_more_rows_and_repeat_by_seed():
    rng = np.random.default_rng(0)

    def sample(n):
        y = rng.integers(0, 2, n).astype(np.float32)
        return y, np.clip(y * 0.3 + rng.random(n) * 0.7, 0, 1)

    small, large = sample(60), sample(6000)
    widths = []
    for y, p in (small, large):
        found = intervals(y, p, seed=3)
        low, high = found["auroc_ci"]
        assert low <= binary.auroc(y, p) <= high
        low_acc, high_acc = found["accuracy_ci"]
        assert low_acc <= np.mean((p >= 0.5) == (y == 1)) <= high_acc
        widths.append(high - low)
    assert widths[1] < widths[0] / 5, "100 times the rows: about a tenth of the width"
    assert intervals(*small, seed=3) == intervals(*small, seed=3)
    assert intervals(*small, seed=3) != intervals(*small, seed=4)
    one_class = intervals(np.ones(20, dtype=np.float32), np.linspace(0, 1, 20))
    assert one_class["auroc_ci"] is None and one_class["accuracy_ci"] is not None


def test_each_resample_s_auroc_is_the_rank_auroc_of_the_rows_it_drew():
    from scipy.stats import rankdata

    from flip.fl.bootstrap import _auroc_draws, _draws

    rng = np.random.default_rng(5)
    for n in (3, 17, 250):
        y = (rng.random(n) < 0.3).astype(np.float32)
        p = np.round(rng.random(n), 1)  # many ties
        rows = rng.integers(0, n, size=(300, n))
        found = _auroc_draws(_draws(rows, n), y == 1, p)
        for resample, drawn in enumerate(rows):
            ys, ranks = y[drawn], rankdata(p[drawn])
            n_pos = int(ys.sum())
            if n_pos in (0, n):
                assert np.isnan(found[resample])
                continue
            u = ranks[ys == 1].sum() - n_pos * (n_pos + 1) / 2
            assert found[resample] == pytest.approx(u / (n_pos * (n - n_pos)), abs=1e-12)


@pytest.fixture(scope="module")
def sites(tmp_path_factory):
    return write_sites(tmp_path_factory.mktemp("messy"))


def test_each_site_holds_out_a_validation_split_from_its_training_rows(sites):
    options = ExperimentOptions(sites=sites, target="num", positive="num>0")
    for site in prepare(options).sites:
        train, validation, test = (
            set(s.person_ids) for s in (site.train, site.validation, site.test)
        )
        assert not train & validation and not train & test and not validation & test
        share = len(validation) / (len(validation) + len(train))
        assert share == pytest.approx(options.validation_fraction, abs=0.02)
        assert 0 < site.validation.y.mean() < 1, "stratified: both classes"
