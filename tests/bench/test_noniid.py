"""The non-IID benchmark's sites: cut from one synthetic pool, skewed as named."""

import csv

import numpy as np

from flip.bench.noniid import write_skewed_sites


def _read(path):
    with path.open(newline="") as handle:
        header, *rows = list(csv.reader(handle))
    return header, rows


def _mean(path, column):
    header, rows = _read(path)
    at = header.index(column)
    return np.mean([float(r[at]) for r in rows if r[at] not in ("", "?")])


def test_feature_skew_rescales_each_sites_labs_and_label_skew_moves_the_outcome(tmp_path):
    feature, note = write_skewed_sites(tmp_path, "feature", sites=3, patients=1200, alpha=0.5)
    iid, _ = write_skewed_sites(tmp_path, "iid", sites=3, patients=1200)
    label, label_note = write_skewed_sites(tmp_path, "label", sites=3, patients=1200, alpha=0.3)

    everyone = sorted(r[0] for p in iid.values() for r in _read(p)[1])
    assert sorted(r[0] for p in feature.values() for r in _read(p)[1]) == everyone
    chol = [_mean(p, "chol") for p in feature.values()]
    chol_iid = [_mean(p, "chol") for p in iid.values()]
    assert np.ptp(chol) > 4 * np.ptp(chol_iid), "each site measures on its own scale"
    assert "lab scale" in note and "outcome" in label_note

    def rate(path):
        header, rows = _read(path)
        return np.mean([r[header.index("num")] != "0" for r in rows])

    assert np.ptp([rate(p) for p in label.values()]) > 2 * np.ptp([rate(p) for p in iid.values()])
