"""The hub's model registry as its pages and API read it: each model's lineage and card,
shown to those who see the model's project; weights exported on request.

A completed deployment run registers its model under the hub's work folder
(`flip.hub.federation`); reading a lineage needs no torch, exporting does.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import orjson

from flip import __version__

#: A model's id: its name and the first hex digits of its weights' SHA-256; never a path.
MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
#: Download formats: the file name each is sent as (after the model's id). `zip` is the
#: model's registry folder: its weights, lineage and card (what `flip models pull` unpacks).
FORMATS = {"torch": "model.pt", "onnx": "model.onnx", "zip": "folder.zip"}
#: The files of a model's folder its zip holds (nothing else the folder may hold).
FOLDER_FILES = ("model.pt", "lineage.json", "MODEL_CARD.md")
#: Where weights exported once are kept, under the registry (not a model id: ids start with
#: a letter or digit): `EXPORTS/MODEL_ID/KEY.FORMAT`, KEY hashing what the export reads.
EXPORTS = ".exports"


class NoModel(LookupError):
    """No such model (or not one the caller may see)."""


class NoExport(ValueError):
    """The model cannot be exported in that format; the message says why."""


def lineages(registry: Path | None) -> list[dict[str, Any]]:
    """Every model's lineage in the registry, newest first (none without a registry)."""
    if registry is None or not registry.is_dir():
        return []
    found = []
    for folder in registry.iterdir():
        if MODEL_ID.match(folder.name) and (folder / "lineage.json").is_file():
            found.append(orjson.loads((folder / "lineage.json").read_bytes()))
    return sorted(found, key=lambda m: str(m.get("registered_at", "")), reverse=True)


def one(registry: Path | None, model_id: str) -> dict[str, Any]:
    """One model's lineage and card (`card`), or NoModel."""
    if registry is None or not MODEL_ID.match(model_id):
        raise NoModel(f"no model {model_id}")
    folder = registry / model_id
    if not (folder / "lineage.json").is_file():
        raise NoModel(f"no model {model_id}")
    lineage = orjson.loads((folder / "lineage.json").read_bytes())
    card = folder / "MODEL_CARD.md"
    return lineage | {"card": card.read_text(encoding="utf-8") if card.is_file() else ""}


def folder_zip(registry: Path, model_id: str) -> bytes:
    """The model's folder zipped as MODEL_ID/FILE (weights, lineage, card); NoModel if the
    id names no folder with weights."""
    folder = registry / model_id
    if not MODEL_ID.fullmatch(model_id) or not (folder / "model.pt").is_file():
        raise NoModel(f"no model {model_id}")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in FOLDER_FILES:
            if (folder / name).is_file():
                archive.write(folder / name, f"{model_id}/{name}")
    return buffer.getvalue()


def export_bytes(registry: Path, model_id: str, fmt: str) -> bytes:
    """The model's weights as a torch state dict or an ONNX graph, or its folder zipped;
    NoExport when the model's kind has none in that format (a tree model, a custom task's
    model as ONNX)."""
    if fmt not in FORMATS:
        raise NoExport(f"format {fmt!r}: one of {', '.join(FORMATS)}")
    if fmt == "zip":
        try:
            return folder_zip(registry, model_id)
        except NoModel as exc:
            raise NoExport(str(exc)) from None
    folder = registry / model_id
    if not MODEL_ID.fullmatch(model_id) or not (folder / "model.pt").is_file():
        raise NoExport(f"no model {model_id}")
    import torch  # the export's bytes depend on its version

    key = _export_key(folder, fmt, torch.__version__)
    kept = registry / EXPORTS / model_id / f"{key}.{fmt}"
    if kept.is_file():
        return kept.read_bytes()
    body = _export(registry, model_id, fmt)
    _keep(kept, body)
    return body


def _export_key(folder: Path, fmt: str, torch_version: str) -> str:
    """SHA-256 of what an export reads: the weights, the lineage, the format and the versions
    of FLIP and torch that write it (a model re-registered under its id gets a new key)."""
    digest = hashlib.sha256(f"{fmt}\0{__version__}\0{torch_version}\0".encode())
    for name in ("model.pt", "lineage.json"):
        digest.update((folder / name).read_bytes() if (folder / name).is_file() else b"")
        digest.update(b"\0")
    return digest.hexdigest()


def _export(registry: Path, model_id: str, fmt: str) -> bytes:
    from flip.fl.registry import RegistryError, export, load  # imports torch

    try:
        record = load(registry, model_id)
        with tempfile.TemporaryDirectory() as scratch:
            out = export(record, fmt, Path(scratch) / FORMATS[fmt])
            return out.read_bytes()
    except RegistryError as exc:
        raise NoExport(str(exc)) from None


def _keep(path: Path, body: bytes) -> None:
    """Keep an export as the model's only one (older keys are stale), written whole: a
    reader sees the old file or the new, never part of one. A registry the hub cannot
    write to keeps nothing (each download exports again)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as scratch:
            scratch.write(body)
        try:
            os.replace(scratch.name, path)
        finally:
            Path(scratch.name).unlink(missing_ok=True)
        for other in path.parent.iterdir():
            if other != path and other.suffix == path.suffix:
                other.unlink(missing_ok=True)
    except OSError:
        return


def summary(lineage: dict[str, Any]) -> dict[str, Any]:
    """What a list of models shows of one: ids, project and run, task, and metrics by site."""
    metrics = lineage.get("metrics") or {}
    return {
        "id": lineage.get("id"),
        "name": lineage.get("name"),
        "project": lineage.get("project"),
        "run": lineage.get("run"),
        "task": lineage.get("task"),
        "task_hash": lineage.get("task_hash"),
        "sha256": lineage.get("sha256"),
        "registered_at": lineage.get("registered_at"),
        "rounds": lineage.get("rounds"),
        "per_site": metrics.get("per_site", {}) if isinstance(metrics, dict) else {},
    }
