"""A registered model on a site's own data: predictions, external validation, and drift.

Data is either a CSV file (models from `flip fl run`, encoded with the encoding in
their lineage) or the site's store (models of a project task, whose spec and
scaling the lineage keeps). Drift compares each numeric feature's local mean with
the mean the federation trained on, in training standard deviations
(standardised mean difference; above 0.2 is flagged, a common rule of thumb):
for store models, where the task's scaling is federated (a fixed scaling holds
reference values, not the training data's).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flip.data.features.csvfile import DatasetError, SiteTable, Target, as_number
from flip.data.features.tabular import TabularData
from flip.fl.preprocessing import Encoding
from flip.fl.registry import ModelRecord, predict
from flip.fl.tasks import binary
from flip.fl.tasks.base import TaskSpec
from flip.fl.tasks.sandbox import Limits

DRIFT_THRESHOLD = 0.2


@dataclass
class LocalData:
    """A site's rows as the model sees them, with labels when the outcome is known."""

    data: TabularData
    has_labels: bool
    drift: dict[str, float]


def _encoding(record: ModelRecord) -> Encoding:
    e = record.lineage["encoding"]
    return Encoding(
        {k: tuple(v) for k, v in e["numeric"].items()},
        tuple(e["indicators"]),
        {k: tuple(v) for k, v in e["categories"].items()},
    )


def from_csv(
    record: ModelRecord, path: Path, target: str | None, positive: str | None
) -> LocalData:
    """Encode a CSV file as the model was trained; labels when `target` is given."""
    if "encoding" not in record.lineage:
        raise DatasetError(f"model {record.id} was not trained on files: use --store")
    encoding = _encoding(record)
    table = SiteTable.read("local", path)
    missing = [c for c in (*encoding.numeric, *encoding.categories) if c not in table.columns]
    if missing:
        raise DatasetError(f"{path} lacks columns the model uses: {', '.join(missing)}")
    rows = list(range(table.n_rows))
    y = np.zeros(len(rows), dtype=np.float32)
    if target:
        if target not in table.columns:
            raise DatasetError(f"{path} has no column {target!r}")
        labels = Target.parse(target, positive).labels(table.columns[target], "local")
        rows = [i for i, v in enumerate(labels) if v is not None]
        y = np.array([labels[i] for i in rows], dtype=np.float32)
    drift = {}
    for column, (mean, std) in encoding.numeric.items():
        values = [as_number(table.columns[column][i]) for i in rows]
        present = [v for v in values if v is not None]
        if present:
            drift[column] = round(abs(float(np.mean(present)) - mean) / std, 4)
    x = encoding.encode(table.columns, rows)
    return LocalData(TabularData(np.array(rows), x, y, encoding.names), target is not None, drift)


def from_store(record: ModelRecord, store: str) -> LocalData:
    """The task's dataset from the site's store (every person with an entry event), scaled
    as the model was trained; drift where that scaling is the training mean and deviation."""
    from flip.data.cdm.store import open_store
    from flip.data.features.tabular import Scaling, extract_raw

    if "task_spec" not in record.lineage:
        raise DatasetError(f"model {record.id} was trained on files: use --data FILE.csv")
    spec = TaskSpec.model_validate(record.lineage["task_spec"])
    if "scaling" in record.lineage:
        scaling = Scaling.model_validate(record.lineage["scaling"])
    elif spec.data.scaling == "fixed":
        scaling = Scaling.of_spec(spec.data)
    else:
        raise DatasetError(f"model {record.id} has federated scaling but its lineage lacks it")
    s = open_store(store, read_only=store.endswith(".duckdb"))
    try:
        raw = extract_raw(s, spec.data)
    finally:
        s.close()
    drift = {}
    if spec.data.scaling == "federated":
        for j, feature in enumerate(spec.data.features):
            present = raw.x[:, j][~np.isnan(raw.x[:, j])]
            if len(present):
                smd = abs(float(present.mean()) - scaling.center[j]) / scaling.scale[j]
                drift[feature.name] = round(smd, 4)
    return LocalData(scaling.apply(raw), True, drift)


def predictions(
    record: ModelRecord,
    local: LocalData,
    sandbox: Limits | None = None,
    bases: Mapping[str, Path] | None = None,
) -> np.ndarray:
    """Predicted probabilities, one per row (a custom task's model: in the sandbox; an
    adapter model: on the site's pretrained encoders at `bases`)."""
    return predict(record, local.data.x, sandbox=sandbox, bases=bases)


def evaluate(
    record: ModelRecord,
    local: LocalData,
    sandbox: Limits | None = None,
    bases: Mapping[str, Path] | None = None,
) -> dict[str, object]:
    """Discrimination and calibration-in-the-large on local data, and feature drift."""
    if not local.has_labels:
        raise DatasetError("evaluation needs the outcome: give --target (and --positive)")
    p = predictions(record, local, sandbox, bases)
    metrics = binary.metrics_of(p, local.data.y)
    auroc = metrics["auroc"]
    return {
        "model": record.id,
        "n": len(local.data.y),
        "prevalence": round(float(local.data.y.mean()), 4) if len(local.data.y) else None,
        "mean_predicted": round(float(p.mean()), 4) if len(p) else None,
        "accuracy": round(metrics["accuracy"], 4),
        "auroc": None if auroc != auroc else round(auroc, 4),
        "drift": {k: {"smd": v, "flag": v > DRIFT_THRESHOLD} for k, v in local.drift.items()},
    }
