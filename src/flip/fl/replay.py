"""A site's answer to a training round it has already trained, re-sent, not recomputed.

A hub that crashes mid-round resumes its run from the last round it checkpointed and
sends the round in flight again: the same round number of the same run, from the same
global weights. Training again would query the site's rows a second time with weights
the server chose (under local DP, with fresh noise: a second release of the same
update), and would count the round twice against the site's limit. Instead the site
keeps its last answer of each run (one file per run, 0600, beside its ledger) and
re-sends it, byte for byte, when the round comes again from weights of the same digest:
no row is read, no round is counted, no epsilon is spent. Its ledger's `run.trained`
entry holds the digests of the weights in and of the answer, so an edited or swapped
file is not re-sent (the round then counts as a new one). The same round from other
weights is a new query and counts as one.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flip.private_files import private_folder, write_private


def weights_digest(state: Mapping[str, Any]) -> str:
    """sha256 of a state dict's names, dtypes, shapes and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(state):
        array = np.ascontiguousarray(torch.as_tensor(state[name]).detach().cpu().numpy())
        digest.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _path(ledger: str, counter: str, project: str, task_hash: str) -> Path:
    key = hashlib.sha256(f"{counter}\0{project}\0{task_hash}".encode()).hexdigest()[:32]
    return Path(ledger).resolve().parent / "replay" / f"{key}.pt"


def keep(
    ledger: str,
    counter: str,
    project: str,
    task_hash: str,
    answer: tuple[dict[str, Any], dict[str, float]],
) -> str:
    """Keep `answer` (trained state, metrics) as the run's last one; its digest."""
    buffer = io.BytesIO()
    torch.save({"state": answer[0], "metrics": answer[1]}, buffer)
    data = buffer.getvalue()
    path = _path(ledger, counter, project, task_hash)
    private_folder(path.parent)
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    write_private(partial, data)
    partial.replace(path)
    return hashlib.sha256(data).hexdigest()


def kept(
    ledger: str, counter: str, project: str, task_hash: str, digest: str
) -> tuple[dict[str, Any], dict[str, float]] | None:
    """The run's last answer if its file still hashes to `digest`, else None."""
    path = _path(ledger, counter, project, task_hash)
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if hashlib.sha256(data).hexdigest() != digest:
        return None
    saved = torch.load(io.BytesIO(data), weights_only=True)
    return dict(saved["state"]), dict(saved["metrics"])
