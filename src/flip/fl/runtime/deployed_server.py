"""The ServerApp a deployment runs: a project's task, configured by the run's config.

`flip.fl.runtime.deployment` writes a Flower App (FAB) whose ServerApp is this one.
The run config names the project, the hub run (`hub-run`, when the hub submits it), the
task spec file, the rounds, the number of sites, the minimum to start a round, the round
timeout, how often evaluate messages go out when the train replies carry the rounds'
validation metrics (`evaluate-every`, optional) and an output folder, where the Flower
run id (`flower-run-id`, to stop the run with), each round's metrics (`rounds.jsonl`,
one line per round as it ends), a checkpoint after every round, and the final and best
models, metrics and federated scaling are written. Replies are pulled every 0.1 s
(`PromptGrid`), not every 3 s.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from flip.fl.runtime.flower import RUN_ID_FILE
from flip.fl.runtime.prompt_grid import PromptGrid
from flip.fl.server import HUB_RUN, task_server_app
from flip.fl.tasks.base import TaskSpec

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run the task for the configured rounds, then write result.json and model.pt."""
    config = context.run_config
    out = Path(str(config["out"]))
    spec = TaskSpec.model_validate_json(Path(str(config["task-spec"])).read_text())
    progress = out / "rounds.jsonl"
    (out / RUN_ID_FILE).write_text(str(context.run_id), encoding="ascii")

    def on_round(number: int, metrics: dict[str, float]) -> None:
        with progress.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({"round": number, "metrics": metrics}) + "\n")

    inner, result = task_server_app(
        str(config["project"]),
        spec,
        rounds=int(config["rounds"]),
        n_sites=int(config["n-sites"]),
        timeout=float(config["round-timeout"]),
        min_sites=int(config["min-sites"]),
        hub_run=int(config[HUB_RUN]) if HUB_RUN in config else None,
        checkpoint=None if spec.secure_aggregation else out / "checkpoint.pt",
        on_round=on_round,
        **({"evaluate_every": int(config["evaluate-every"])} if "evaluate-every" in config else {}),
    )
    inner(PromptGrid(grid), context)
    torch.save(result.state_dict, out / "model.pt")
    if result.best_round is not None:
        torch.save(result.best_state_dict, out / "best.pt")
    document = {
        "rounds": result.rounds,
        "per_site": result.per_site,
        "scaling": result.scaling and result.scaling.model_dump(mode="json"),
        "best_round": result.best_round,
    }
    (out / "result.json").write_text(json.dumps(document, indent=2), encoding="utf-8")
