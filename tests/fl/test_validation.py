"""External validation of a registered model on a site's own CSV data, and drift."""

import csv
import json
import subprocess
import sys

import torch

from flip.data.features.csvfile import SiteTable, column_kind, site_stats
from flip.fl.preprocessing import combine
from flip.fl.registry import register
from flip.fl.tasks.tabular_logreg import new_model
from flip.synth import default_profiles
from flip.synth.flat import write_table


def _registered(tmp_path):
    """A logistic regression 'trained' by hand on age: older is riskier."""
    path = write_table(default_profiles(3)[0], tmp_path / "train.csv")
    table = SiteTable.read("t", path)
    columns = ["age", "sbp", "sex"]
    kinds = {c: column_kind(table.columns[c]) for c in columns}
    encoding = combine([site_stats(table, list(range(table.n_rows)), kinds)], kinds)
    model = new_model(len(encoding.names), 0)
    with torch.no_grad():
        model.weight[0, encoding.names.index("age")] = 1.5
        model.bias[0] = -1.5
    lineage = {
        "task": "tabular-logreg",
        "n_features": len(encoding.names),
        "seed": 0,
        "encoding": {
            "numeric": encoding.numeric,
            "indicators": list(encoding.indicators),
            "categories": encoding.categories,
            "features": encoding.names,
        },
    }
    return register(tmp_path / "registry", "age-risk", model.state_dict(), lineage), path


def _shifted(source, out, years):
    rows = list(csv.DictReader(source.open()))
    with out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow(row | {"age": str(int(row["age"]) + years)})
    return out


def _site(*args):
    return subprocess.run(
        [sys.executable, "-m", "flip", "site", *args], capture_output=True, text=True
    )


def test_evaluate_reports_discrimination_calibration_and_drift(tmp_path):
    record, path = _registered(tmp_path)
    same = _site(
        "evaluate",
        record.id,
        "--data",
        str(path),
        "--target",
        "num",
        "--positive",
        "num>0",
        "--registry",
        str(tmp_path / "registry"),
        "--json",
    )
    assert same.returncode == 0, same.stderr
    result = json.loads(same.stdout)
    assert result["auroc"] > 0.6 and result["n"] == 2400
    assert not result["drift"]["age"]["flag"]
    older = _shifted(path, tmp_path / "older.csv", 15)
    moved = json.loads(
        _site(
            "evaluate",
            record.id,
            "--data",
            str(older),
            "--target",
            "num",
            "--positive",
            "num>0",
            "--registry",
            str(tmp_path / "registry"),
            "--json",
        ).stdout
    )
    assert moved["drift"]["age"]["flag"] and not moved["drift"]["sbp"]["flag"]
    assert moved["mean_predicted"] > result["mean_predicted"]


def test_predict_writes_one_probability_per_row(tmp_path):
    record, path = _registered(tmp_path)
    out = tmp_path / "p.csv"
    done = _site(
        "predict",
        record.id,
        "--data",
        str(path),
        "--out",
        str(out),
        "--registry",
        str(tmp_path / "registry"),
    )
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 2400 and all(0 <= float(r["probability"]) <= 1 for r in rows)
    wrong = _site(
        "evaluate", record.id, "--store", "x.duckdb", "--registry", str(tmp_path / "registry")
    )
    assert wrong.returncode == 1 and "trained on files" in wrong.stderr


def test_a_store_model_scales_as_it_was_trained_and_reports_drift_from_its_training_mean(
    tmp_path,
):
    import dataclasses

    import numpy as np
    import pytest

    from flip.config import SiteConfig
    from flip.data.cdm.store import open_store
    from flip.data.features import extract_raw
    from flip.data.features.csvfile import DatasetError
    from flip.fl.registry import federated_lineage
    from flip.fl.tasks import mace_task
    from flip.fl.tasks.base import scaling_over
    from flip.fl.tasks.models import new_model as task_model
    from flip.fl.validation import from_store
    from tests.conftest import build_site

    site = SiteConfig.load(build_site(tmp_path, "s", "csv", 80))
    spec = mace_task()
    store = open_store(site.store, read_only=True)
    raw = extract_raw(store, spec.data)
    store.close()
    here = scaling_over(spec, [raw])
    age = [f.name for f in spec.data.features].index("age")
    center = list(here.center)
    center[age] += 0.5 * here.scale[age]
    trained = here.model_copy(update={"center": tuple(center)})
    lineage = federated_lineage(spec, rounds=1, per_site={}, round_metrics=[], scaling=trained)
    record = register(tmp_path / "registry", "m", task_model(spec).state_dict(), lineage)

    assert np.array_equal(from_store(record, site.store).data.x, trained.apply(raw).x)
    result = _site(
        "evaluate",
        record.id,
        "--store",
        site.store,
        "--registry",
        str(tmp_path / "registry"),
        "--json",
    )
    assert result.returncode == 0, result.stderr
    drift = json.loads(result.stdout)["drift"]
    assert drift["age"] == {"smd": pytest.approx(0.5, abs=1e-3), "flag": True}
    assert drift["systolic_bp"]["smd"] < 1e-3 and not drift["systolic_bp"]["flag"]
    unscaled = dataclasses.replace(
        record, lineage={k: v for k, v in lineage.items() if k != "scaling"}
    )
    with pytest.raises(DatasetError, match="lineage lacks it"):
        from_store(unscaled, site.store)
