"""The model registry: each model's weights, lineage and model card, content-addressed.

A registry is a folder; each model lives in `<id>/` with `model.pt` (the torch
state dict; for tabular-xgboost, the booster's JSON bytes under `booster`),
`lineage.json` (task, config, sites and their sizes, data hashes, strategy,
privacy budget, per-round and per-site metrics) and `MODEL_CARD.md`.
The id is the model's name and the first 12 hex digits of the SHA-256 of its
weights, so the same weights always get the same id.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flip.data.features.tabular import Scaling
from flip.fl.tasks import binary, tabular_xgboost
from flip.fl.tasks.base import TaskSpec, task_hash
from flip.fl.tasks.models import model_factory, new_model
from flip.fl.tasks.sandbox import Limits, SandboxRefused, predict_custom


def default_registry() -> Path:
    """FLIP_REGISTRY, else ~/.flip/models."""
    return Path(os.environ.get("FLIP_REGISTRY", Path.home() / ".flip" / "models"))


class RegistryError(LookupError):
    """No such model, or an export the model does not allow."""


@dataclass(frozen=True)
class ModelRecord:
    """A registered model."""

    id: str
    path: Path
    lineage: dict[str, Any]


def _digest(state: dict[str, torch.Tensor]) -> str:
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in sorted(state.items())}, buffer)
    return hashlib.sha256(buffer.getvalue()).hexdigest()


def register(
    registry: Path, name: str, state: dict[str, torch.Tensor], lineage: dict[str, Any]
) -> ModelRecord:
    """Store a model with its lineage and a generated model card; return its record."""
    digest = _digest(state)
    model_id = f"{name}-{digest[:12]}"
    folder = registry / model_id
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / "model.pt")
    full = {
        "id": model_id,
        "name": name,
        "sha256": digest,
        "registered_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **lineage,
    }
    (folder / "lineage.json").write_text(json.dumps(full, indent=2, default=str), encoding="utf-8")
    (folder / "MODEL_CARD.md").write_text(model_card(full), encoding="utf-8")
    return ModelRecord(model_id, folder, full)


def register_with_best(
    registry: Path,
    name: str,
    state: dict[str, torch.Tensor],
    lineage: dict[str, Any],
    best_round: int | None,
    best_state: dict[str, torch.Tensor],
) -> tuple[ModelRecord, ModelRecord | None]:
    """Register a run's final model as `name` and, when the run kept one, its best round's
    model (highest federated AUROC) as `name-best`, whose lineage names the final one."""
    final = register(registry, name, state, lineage)
    if best_round is None:
        return final, None
    best_lineage = {**lineage, "best_round": best_round, "final_model": final.id}
    return final, register(registry, f"{name}-best", best_state, best_lineage)


def federated_lineage(
    spec: TaskSpec,
    *,
    rounds: int,
    per_site: dict[str, dict[str, float]],
    round_metrics: list[dict[str, float]],
    scaling: Scaling | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The lineage of a project task's federated model: task, config, strategy, sites (their
    training and test rows, data fingerprints), privacy budget, metrics, and the
    federation's scaling when the task's scaling is federated."""
    if scaling is not None:
        extra["scaling"] = scaling.model_dump(mode="json")
    site_keys = ("n_train", "n_test", "data_sha256")
    privacy = spec.privacy.budget(rounds) if spec.privacy else None
    if privacy is not None and spec.privacy is not None and spec.privacy.level == "record":
        from flip.fl.dp_sgd import record_budget

        rows = {n: int(m["n_train"]) for n, m in per_site.items() if "n_train" in m}
        privacy = record_budget(
            privacy, rows, batch_size=spec.batch_size, epochs=spec.local_epochs, rounds=rounds
        )
    return {
        "task": spec.kind,
        "task_hash": task_hash(spec),
        "task_spec": spec.model_dump(mode="json"),
        "n_features": spec.data.width,
        "seed": spec.seed,
        "outcome": spec.name,
        "strategy": "fedavg",
        "rounds": rounds,
        "local_epochs": spec.local_epochs,
        "sites": {n: {k: m[k] for k in site_keys if k in m} for n, m in per_site.items()},
        "metrics": {"per_site": per_site},
        "privacy": privacy,
        "round_metrics": round_metrics,
        **extra,
    }


def list_models(registry: Path) -> list[ModelRecord]:
    """Every model in the registry, newest first."""
    if not registry.exists():
        return []
    records = [load(registry, p.name) for p in registry.iterdir() if (p / "lineage.json").exists()]
    return sorted(records, key=lambda r: r.lineage.get("registered_at", ""), reverse=True)


def load(registry: Path, model_id: str) -> ModelRecord:
    """One model's record."""
    folder = registry / model_id
    if not (folder / "lineage.json").exists():
        raise RegistryError(f"no model {model_id} in {registry}")
    return ModelRecord(
        model_id, folder, json.loads((folder / "lineage.json").read_text(encoding="utf-8"))
    )


TREES = "tabular-xgboost"


def booster_state(booster: bytes) -> dict[str, torch.Tensor]:
    """A tree model's bytes as the state dict the registry stores."""
    return {"booster": torch.frombuffer(bytearray(booster), dtype=torch.uint8)}


def _booster(record: ModelRecord) -> bytes:
    state = torch.load(record.path / "model.pt", weights_only=True)
    return state["booster"].numpy().tobytes()


def predict(
    record: ModelRecord,
    x: np.ndarray,
    *,
    sandbox: Limits | None = None,
    bases: Mapping[str, Path] | None = None,
) -> np.ndarray:
    """Predicted probabilities of the outcome for the rows of `x`, whatever the model kind;
    a custom task's model is scored only in the sandbox, within the limits `sandbox` gives,
    and an adapter model only on its pretrained encoders at `bases` (a site's own copies)."""
    if record.lineage["task"] == TREES:
        return tabular_xgboost.predict(_booster(record), x)
    if record.lineage["task"] == "custom":
        if sandbox is None:
            raise RegistryError(
                f"{record.id} is a custom task's model: its code runs only in the sandbox, "
                "after the site approved the task (give --site-config)"
            )
        state = torch.load(record.path / "model.pt", weights_only=True)
        spec_json = json.dumps(record.lineage["task_spec"])
        try:
            return predict_custom(spec_json, state, x.astype(np.float32), limits=sandbox)
        except SandboxRefused as exc:
            raise RegistryError(str(exc)) from exc
    return binary.predict(build(record, bases), x)


def build(record: ModelRecord, bases: Mapping[str, Path] | None = None) -> torch.nn.Module:
    """The (torch) model with its registered weights, ready to predict; an adapter model's
    pretrained encoders load from `bases`, the site's local paths of them."""
    lineage = record.lineage
    if lineage["task"] == TREES:
        raise RegistryError(f"{record.id} is a tree model: it has no torch module")
    if lineage["task"] == "custom":
        raise RegistryError(
            f"{record.id} is a custom task's model: its code runs only in the sandbox"
        )
    if "task_spec" in lineage:
        spec = TaskSpec.model_validate(lineage["task_spec"])
        if spec.adapters and bases is None:
            names = ", ".join(a.weights.name for a in spec.adapters)
            raise RegistryError(
                f"{record.id} holds LoRA adapters and heads only: its pretrained encoder "
                f"({names}) stays at the sites, so it does not build from the registry alone "
                "(at a site that registered it, give --site-config)"
            )
        model = new_model(spec, bases)
    else:
        model = model_factory(lineage["task"])(
            int(lineage["n_features"]), int(lineage.get("seed", 0))
        )
    model.load_state_dict(torch.load(record.path / "model.pt", weights_only=True))
    return model.eval()


def export(record: ModelRecord, fmt: str, out: Path) -> Path:
    """Write the model as a torch state dict (`torch`) or an ONNX graph (`onnx`); a tree
    model as XGBoost's JSON (`xgboost`), which `xgboost.Booster(model_file=...)` loads."""
    trees = record.lineage["task"] == TREES
    if fmt == "xgboost" and trees:
        out.write_bytes(_booster(record))
        return out
    if trees:
        raise RegistryError(f"{record.id} is a tree model: export it with --format xgboost")
    if fmt == "torch":
        torch.save(torch.load(record.path / "model.pt", weights_only=True), out)
        return out
    if fmt == "onnx":
        model = build(record)
        example = torch.zeros(1, int(record.lineage["n_features"]))
        torch.onnx.export(
            model,
            (example,),
            str(out),
            input_names=["features"],
            output_names=["logit"],
            dynamic_axes={"features": {0: "batch"}, "logit": {0: "batch"}},
            dynamo=False,
        )
        return out
    raise RegistryError(f"unknown export format {fmt!r}: torch or onnx (xgboost for trees)")


def _columns(metrics: dict[str, Any]) -> list[str]:
    """The metric names (not row counts) any site or the overall row reports, first seen first."""
    rows = [*metrics.get("per_site", {}).values(), metrics.get("overall") or {}]
    names: dict[str, None] = {}
    for row in rows:
        names.update(
            (k, None)
            for k, v in row.items()
            if isinstance(v, int | float) and not k.startswith(("n_", "num_"))
        )
    return list(names)


def _score(row: dict[str, Any], columns: list[str]) -> str:
    """One table row's cells: each metric to three places, "withheld" where not released."""
    cells = [row.get(c) for c in columns]
    return " | ".join("withheld" if v is None else f"{v:.3f}" for v in cells)


def model_card(lineage: dict[str, Any]) -> str:
    """A model card in Markdown, generated from the lineage."""
    task = lineage["task"]
    if lineage.get("task_hash"):
        task += f", task hash `{lineage['task_hash']}`"
    runtime = lineage.get("runtime", "simulation")
    training = (
        f"{lineage.get('strategy')} for {lineage.get('rounds')} rounds of "
        f"{lineage.get('local_epochs')} local epochs ({runtime} runtime)"
    )
    privacy = lineage.get("privacy") or "no differential privacy; only model updates left the sites"
    lines = [
        f"# Model card: {lineage['name']}",
        "",
        f"- **Id**: `{lineage['id']}` (SHA-256 of weights `{lineage['sha256']}`)",
        f"- **Registered**: {lineage['registered_at']}",
        f"- **Task**: {task}",
        f"- **Outcome**: {lineage.get('outcome', 'n/a')}",
        f"- **Training**: {training}",
        f"- **Privacy**: {privacy}",
    ]
    if lineage.get("best_round"):
        lines.append(
            f"- **Weights**: the best round's, round {lineage['best_round']} (highest "
            f"federated AUROC); the final round's are `{lineage['final_model']}`"
        )
    lines += [
        "",
        "## Training data",
        "",
        "| site | training rows | test rows | data hash |",
        "|---|---|---|---|",
    ]
    for name, info in lineage.get("sites", {}).items():
        digest = str(info.get("data_sha256", ""))[:12]
        rows = ["withheld" if info.get(k) is None else info[k] for k in ("n_train", "n_test")]
        lines.append(f"| {name} | {rows[0]} | {rows[1]} | `{digest}` |")
    lines += ["", "## Performance on each site's held-out test set", ""]
    metrics = lineage.get("metrics", {})
    columns = _columns(metrics)
    lines += ["| site | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, m in metrics.get("per_site", {}).items():
        lines.append(f"| {name} | {_score(m, columns)} |")
    if metrics.get("overall"):
        lines.append(f"| **all sites** | {_score(metrics['overall'], columns)} |")
    lines += [
        "",
        "## Use and limits",
        "",
        "Validate on your own population before use: the sites above may not resemble",
        "yours. Features are encoded as the lineage records (`encoding`).",
        "",
    ]
    return "\n".join(lines)
