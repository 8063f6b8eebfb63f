"""A bare Flower app, the reference `flip bench fl` measures FLIP against.

Plain Flower Message API, a torch logistic regression and a hand-written SGD
loop over the same prepared site arrays FLIP's experiment client reads, with
the same batches computed the same way as FLIP's `binary.train` (so the ratio
measures what FLIP adds, not a faster loop): no FLIP code on the client path.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

import numpy as np
import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

app = ClientApp()


def _arrays(context: Context) -> dict[str, np.ndarray]:
    return _load(int(context.node_config["partition-id"]))


@cache
def _load(partition: int) -> dict[str, np.ndarray]:
    """A site's arrays, read once per actor, as FLIP's experiment client does."""
    path = Path(os.environ["FLIP_EXPERIMENT_DIR"]) / f"site-{partition}.npz"
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Local epochs of SGD on the site's training arrays."""
    data = _arrays(context)
    config = msg.content["config"]
    x, y = torch.from_numpy(data["train_x"]), torch.from_numpy(data["train_y"]).unsqueeze(1)
    model = torch.nn.Linear(x.shape[1], 1)
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    optimiser = torch.optim.SGD(
        model.parameters(), lr=float(config["learning-rate"]), weight_decay=float(config["l2"])
    )
    batch_size = int(config["batch-size"])
    generator = torch.Generator().manual_seed(0)
    for _ in range(int(config["local-epochs"])):
        order = torch.randperm(len(y), generator=generator)
        shuffled_x, shuffled_y = x[order], y[order]
        for start in range(0, len(y), batch_size):
            optimiser.zero_grad()
            end = start + batch_size
            torch.nn.functional.binary_cross_entropy_with_logits(
                model(shuffled_x[start:end]), shuffled_y[start:end]
            ).backward()
            optimiser.step()
    metrics = MetricRecord({"num-examples": float(len(y))})
    return Message(
        RecordDict({"arrays": ArrayRecord(model.state_dict()), "metrics": metrics}), reply_to=msg
    )


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Accuracy on the site's test arrays."""
    data = _arrays(context)
    x, y = torch.from_numpy(data["test_x"]), data["test_y"]
    model = torch.nn.Linear(x.shape[1], 1)
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    with torch.no_grad():
        accuracy = float(np.mean((model(x).squeeze(1).numpy() >= 0) == (y == 1)))
    metrics = MetricRecord({"accuracy": accuracy, "num-examples": float(len(y))})
    return Message(RecordDict({"metrics": metrics}), reply_to=msg)
