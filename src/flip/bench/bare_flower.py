"""A bare Flower app, the reference `flip bench fl` measures FLIP against.

Plain Flower Message API, a torch logistic regression and a hand-written SGD
loop over the same prepared site arrays FLIP's experiment client reads, with
the same batches computed the same way as FLIP's `binary.train` (so the ratio
measures what FLIP adds, not a faster loop): no FLIP code on the client path.
In simulation a node's arrays are FLIP_EXPERIMENT_DIR/site-<partition>.npz; on a
deployment's SuperNodes, `ARRAYS` beside the node's site.yaml. `server_app` runs
FedAvg with Flower's own grid for the rounds its settings give (the run config in
deployment, BARE_SETTINGS_ENV in simulation). Run as a script
(`python -m flip.bench.bare_flower FOLDER SETTINGS_JSON`) it is the whole command
`flip bench fl` times `flip fl run` against: start-up, simulation and all; it prints
one JSON line, the accuracy of each round's federated evaluation, so a run whose
sites failed cannot pass for a fast one. The script runs the apps of this module
imported by name: Ray sends a ClientApp of `__main__` to its actors by reference to a
module they do not have, and every message failed (the bare run trained nothing).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from functools import cache
from pathlib import Path

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

app = ClientApp()
server_app = ServerApp()

#: A deployed node's arrays, in the folder of its site.yaml.
ARRAYS = "bare-flower-arrays.npz"
#: The server's settings (JSON) in simulation, where a run has no run config.
BARE_SETTINGS_ENV = "FLIP_BARE_SETTINGS"
#: Each round's aggregated evaluation accuracy of the last run in this process.
accuracies: list[float] = []


def _arrays(context: Context) -> dict[str, np.ndarray]:
    node = context.node_config
    if "site-config" in node:
        return _load(str(Path(str(node["site-config"])).parent / ARRAYS))
    return _load(str(Path(os.environ["FLIP_EXPERIMENT_DIR"]) / f"site-{node['partition-id']}.npz"))


@cache
def _load(path: str) -> dict[str, np.ndarray]:
    """A site's arrays, read once per actor, as FLIP's experiment client does."""
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


@server_app.main()
def main(grid: Grid, context: Context) -> None:
    """FedAvg from zero weights for the settings' rounds over `n-sites` nodes."""
    run = context.run_config or json.loads(os.environ[BARE_SETTINGS_ENV])
    n = int(run["n-sites"])
    model = torch.nn.Linear(int(run["n-features"]), 1)
    torch.nn.init.zeros_(model.weight)
    torch.nn.init.zeros_(model.bias)
    keys = ("learning-rate", "l2", "batch-size", "local-epochs")
    config = ConfigRecord({k: run[k] for k in keys})
    result = FedAvg(min_train_nodes=n, min_evaluate_nodes=n, min_available_nodes=n).start(
        grid=grid,
        initial_arrays=ArrayRecord(model.state_dict()),
        num_rounds=int(run["rounds"]),
        train_config=config,
        evaluate_config=config,
    )
    evaluated = result.evaluate_metrics_clientapp
    accuracies[:] = [float(evaluated[r]["accuracy"]) for r in sorted(evaluated)]


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


def simulate(folder: str, settings: str) -> list[float]:
    """FedAvg in Flower's simulation runtime over FOLDER/site-<i>.npz, one node per file:
    each round's federated accuracy (a round no site answered has none)."""
    from flwr.simulation import run_simulation

    os.environ["FLIP_EXPERIMENT_DIR"] = folder
    os.environ[BARE_SETTINGS_ENV] = settings
    backend = {
        "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
        "init_args": {
            "num_cpus": os.cpu_count() or 1,
            "include_dashboard": False,
            "logging_level": logging.ERROR,
            "log_to_driver": False,
        },
    }
    logging.getLogger("flwr").setLevel(logging.ERROR)
    n = int(json.loads(settings)["n-sites"])
    accuracies.clear()
    run_simulation(server_app, app, n, backend_config=backend)
    return list(accuracies)


if __name__ == "__main__":
    from flip.bench import bare_flower

    print(json.dumps({"accuracy": bare_flower.simulate(sys.argv[1], sys.argv[2])}))
