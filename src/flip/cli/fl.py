"""`flip fl …`: federated learning experiments."""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from flip.cli.errors import one_line_errors
from flip.cli.fl_task import run_task

if TYPE_CHECKING:
    from flip.fl.experiment import ExperimentOptions

SaveOption = Annotated[
    str | None, typer.Option(help="Register the federated model under this name.")
]
RegistryOption = Annotated[
    Path | None, typer.Option(help="Model registry (default: FLIP_REGISTRY or ~/.flip/models).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]

app = typer.Typer(help="Federated learning: experiments on files.", no_args_is_help=True)


@contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send everything written to file descriptor 1 (Flower, Ray, workers) to stderr meanwhile."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _sites(values: list[str]) -> dict[str, Path]:
    sites: dict[str, Path] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise typer.BadParameter(f"{value!r}: expected NAME=PATH.csv", param_hint="--site")
        if name in sites:
            raise typer.BadParameter(f"site {name} is given twice", param_hint="--site")
        sites[name.strip()] = Path(path.strip())
    return sites


@app.command()
def run(
    site: Annotated[list[str], typer.Option(help="A site as NAME=PATH.csv; repeat for each site.")],
    target: Annotated[str, typer.Option(help="The outcome column.")],
    positive: Annotated[
        str | None,
        typer.Option(
            help='Which rows are positive, e.g. "num>0" or "yes" (needed unless 2-valued).'
        ),
    ] = None,
    drop: Annotated[
        list[str] | None, typer.Option(help="A column to leave out; repeatable.")
    ] = None,
    task: Annotated[
        str, typer.Option(help="tabular-logreg, tabular-mlp or tabular-xgboost.")
    ] = "tabular-logreg",
    strategy: Annotated[
        str | None,
        typer.Option(
            help="A Flower strategy by name, e.g. fedavg, fedprox; default fedavg, "
            "or fedxgb_bagging for tabular-xgboost (or fedxgb_cyclic)."
        ),
    ] = None,
    strategy_option: Annotated[
        list[str] | None,
        typer.Option(
            help="A strategy hyperparameter as NAME=VALUE (Flower's keyword), repeatable: "
            "proximal_mu=0.5 (fedprox), num_malicious_nodes=1 (krum), eta=0.01 (fedadam).",
        ),
    ] = None,
    rounds: Annotated[int, typer.Option(help="Federated rounds.")] = 20,
    local_epochs: Annotated[int, typer.Option(help="Epochs each site trains per round.")] = 5,
    test_fraction: Annotated[
        float, typer.Option(help="Share of each site held out, stratified.")
    ] = 0.25,
    validation_fraction: Annotated[
        float,
        typer.Option(
            help="Share of each site's training rows held out to evaluate rounds and choose "
            "the best one (the test split never chooses)."
        ),
    ] = 0.2,
    seed: Annotated[int, typer.Option(help="Seed for splits and initial weights.")] = 0,
    seeds: Annotated[
        int,
        typer.Option(
            min=1,
            help="Repeat the whole comparison with seeds SEED..SEED+N-1 and report each arm's "
            "mean ± sd (splits, initial weights and batches change with the seed).",
        ),
    ] = 1,
    compare: Annotated[
        bool, typer.Option(help="Also train local-only and pooled baselines.")
    ] = False,
    runtime: Annotated[
        str, typer.Option(help="simulation: Flower's simulation engine.")
    ] = "simulation",
    as_json: JsonOption = False,
    dp: Annotated[
        str | None,
        typer.Option(
            help="Differential privacy, off if not given. server: central DP (the server clips "
            "and noises an equal-weight mean; fedavg or fedprox); client: each site clips and "
            "noises its own update (any strategy); record: DP-SGD at each site (Opacus)."
        ),
    ] = None,
    noise_multiplier: Annotated[float, typer.Option(help="--dp: Gaussian noise multiplier.")] = 1.0,
    clip: Annotated[
        float,
        typer.Option(
            help="--dp: clipping norm of each site's update (record: each example's gradient)."
        ),
    ] = 1.0,
    delta: Annotated[float, typer.Option(help="--dp: the delta epsilon is reported at.")] = 1e-5,
    adaptive_clip: Annotated[
        bool,
        typer.Option(
            "--adaptive-clip",
            help="--dp: adapt the clipping norm each round, starting from --clip, toward the "
            "norm that leaves --clip-quantile of the sites' updates unclipped (same epsilon).",
        ),
    ] = False,
    clip_quantile: Annotated[
        float, typer.Option(help="--adaptive-clip: the share of updates left unclipped.")
    ] = 0.5,
    save: SaveOption = None,
    registry: RegistryOption = None,
    personalise: Annotated[
        int,
        typer.Option(
            help="After federation, fine-tune the global model this many epochs at each "
            'site and report it apart, as "personalised" (0: off).'
        ),
    ] = 0,
    personal: Annotated[
        str | None,
        typer.Option(
            help="Personalised federation, reported beside the global model: fedbn (each site "
            "keeps its own batch norm of the inputs), fedper (its own last layer) or ditto "
            "(its own model, pulled toward the global one by --ditto-lambda)."
        ),
    ] = None,
    ditto_lambda: Annotated[
        float, typer.Option(help="--personal ditto: the pull toward the global model.")
    ] = 0.1,
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            help="Save the global model here after every round; `flip fl resume DIR` goes on "
            "from the last one if the run is stopped."
        ),
    ] = None,
    secagg: Annotated[
        bool,
        typer.Option(
            "--secagg",
            help="Secure aggregation (Flower's SecAgg+): the server can unmask only the sum "
            "of the sites' updates, never one site's. fedavg, two or more sites.",
        ),
    ] = False,
) -> None:
    """Train a model federated across sites given as CSV files, and compare it with baselines.

    Each file stands for one hospital. Preprocessing is federated (only sums and
    counts are shared), each file is split into train and test by seed, and
    metrics are reported per site and over all test sets together. Progress goes
    to stderr; with --json, stdout carries exactly one JSON object.

    Example: flip fl run --site leeds=leeds.csv --site york=york.csv --target num --positive "num>0"
    Example: flip fl run --site leeds=leeds.csv --site york=york.csv --target diabetes --compare
    """
    from pydantic import ValidationError

    from flip.fl.experiment import ExperimentOptions
    from flip.fl.privacy import PrivacySpec

    if dp not in (None, "server", "client", "record"):
        raise typer.BadParameter("choose server, client or record", param_hint="--dp")
    if not math.isfinite(ditto_lambda) or ditto_lambda < 0:
        raise typer.BadParameter("must be a finite number, at least 0", param_hint="--ditto-lambda")
    if adaptive_clip and not dp:
        raise typer.BadParameter("adaptive clipping is part of --dp: give --dp too")
    try:
        privacy = (
            PrivacySpec(
                level="record" if dp == "record" else "site",
                clipping="client" if dp == "record" else dp,
                noise_multiplier=noise_multiplier,
                clipping_norm=clip,
                delta=delta,
                adaptive=adaptive_clip,
                target_quantile=clip_quantile,
            )
            if dp
            else None
        )
    except ValidationError as exc:
        hint = "--noise-multiplier/--clip/--delta/--clip-quantile"
        raise typer.BadParameter(exc.errors()[0]["msg"], param_hint=hint) from None

    options = ExperimentOptions(
        sites=_sites(site),
        target=target,
        positive=positive,
        drop=tuple(drop or ()),
        task=task,
        strategy=strategy or ("fedxgb_bagging" if task == "tabular-xgboost" else "fedavg"),
        strategy_options=_strategy_options(strategy_option or []),
        rounds=rounds,
        local_epochs=local_epochs,
        test_fraction=test_fraction,
        validation_fraction=validation_fraction,
        seed=seed,
        compare=compare,
        runtime=runtime,
        privacy=privacy,
        personalise=personalise,
        personal=personal or "",
        ditto_lambda=ditto_lambda,
        checkpoint=checkpoint,
        secure_aggregation=secagg,
    )
    if seeds > 1:
        _run_seeds(options, seeds, as_json, save)
        return
    _run(options, as_json, save, registry)


def _strategy_options(given: list[str]) -> dict[str, float]:
    """NAME=VALUE pairs as a dict of numbers, or a one-line error naming the bad one."""
    options: dict[str, float] = {}
    for item in given:
        name, sep, value = item.partition("=")
        try:
            options[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise typer.BadParameter(f"{item!r}: give NAME=NUMBER", param_hint="--strategy-option")
    return options


@app.command()
def resume(
    folder: Annotated[Path, typer.Argument(help="The --checkpoint folder of a stopped run.")],
    as_json: JsonOption = False,
    save: SaveOption = None,
    registry: RegistryOption = None,
) -> None:
    """Go on with a `flip fl run --checkpoint DIR` that was stopped, from its last round.

    The run's options come from DIR/options.json; rounds already done are not
    repeated, and the result is reported as if the run had never stopped.

    Example: flip fl resume /tmp/flip-tour/xgb-run
    """
    from flip.data.features.csvfile import DatasetError
    from flip.fl.experiment import load_options

    with one_line_errors(DatasetError):
        options = load_options(folder)
    _run(options, as_json, save, registry)


def _run(
    options: ExperimentOptions, as_json: bool, save: str | None, registry: Path | None
) -> None:
    from flip.data.features.csvfile import DatasetError
    from flip.fl.experiment import checkpointing, run_experiment

    err = Console(stderr=True)
    with (
        one_line_errors(DatasetError, RuntimeError),
        stdout_to_stderr(),
        Progress(*_columns(), console=err) as bar,
    ):
        if save and options.personal == "fedbn":
            raise DatasetError("--personal fedbn adds site layers to the model: it has no --save")
        total = options.rounds
        rounds_task = bar.add_task(f"{options.strategy} rounds", total=total, status="")

        def on_round(number: int, metrics: dict[str, float]) -> None:
            accuracy = metrics.get("accuracy", float("nan"))
            bar.update(rounds_task, completed=number, status=f"accuracy {accuracy:.3f}")

        with checkpointing(options):
            experiment = run_experiment(options, on_round)
        if save:
            from flip.fl.registry import booster_state, default_registry, register_with_best

            def state(model):
                return booster_state(model) if isinstance(model, bytes) else model.state_dict()

            record, best = register_with_best(
                registry or default_registry(),
                save,
                state(experiment.model),
                experiment.lineage(options),
                experiment.best_round,
                {} if experiment.best is None else state(experiment.best),
            )
            err.print(f"registered model {record.id} in {record.path.parent}")
            if best is not None:
                err.print(f"and its best round's ({experiment.best_round}) as {best.id}")
    result = experiment.result
    if as_json:
        typer.echo(json.dumps(result))
        return
    _print(result)


def _run_seeds(options: ExperimentOptions, seeds: int, as_json: bool, save: str | None) -> None:
    from flip.data.features.csvfile import DatasetError
    from flip.fl.experiment import run_seeds

    err = Console(stderr=True)
    with one_line_errors(DatasetError, RuntimeError), stdout_to_stderr():
        if save or options.checkpoint is not None:
            raise DatasetError("--seeds repeats runs: register or checkpoint one run at a time")
        options.check()
        with Progress(*_columns(), console=err) as bar:
            task = bar.add_task("runs x rounds", total=seeds * options.rounds, status="")

            def on_round(run: int, number: int, metrics: dict[str, float]) -> None:
                done = run * options.rounds + number
                bar.update(task, completed=done, status=f"seed {options.seed + run}")

            result = run_seeds(options, seeds, on_round)
    if as_json:
        typer.echo(json.dumps(result))
        return
    table = Table(
        title=f"{result['strategy']}, {result['rounds']} rounds, seeds {result['seeds']}: "
        "overall accuracy / AUROC on held-out data, mean ± sd"
    )
    for column in ("arm", "accuracy", "AUROC"):
        table.add_column(column, justify="left" if column == "arm" else "right")

    def cell(stats: dict) -> str:
        if stats["mean"] is None:
            return "n/a"
        return f"{stats['mean']:.3f} ± {stats['sd']:.3f}"

    for arm, stats in result["summary"].items():
        table.add_row(arm, cell(stats["accuracy"]), cell(stats["auroc"]))
    Console().print(table)


def _columns() -> tuple:
    return (
        TextColumn("{task.description}"),
        BarColumn(bar_width=24),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"),
    )


@app.command("new-task")
def new_task(
    name: Annotated[str, typer.Argument(help="The task's name (letters, digits, - and _).")],
    parent: Annotated[Path, typer.Option("--dir", help="Where to create the folder.")] = Path("."),
) -> None:
    """Write a custom task folder: a documented model.py and a task.yaml to edit.

    Edit model.py (the model) and task.yaml (data, training, rounds), then
    `flip fl pack-task NAME` writes NAME/task.json and prints the hash sites approve.

    Example: flip fl new-task risk-net
    """
    from flip.fl.tasks.authoring import TaskFolderError
    from flip.fl.tasks.authoring import new_task as write

    with one_line_errors(TaskFolderError):
        folder = write(name, parent)
    typer.echo(f"wrote {folder}/model.py and {folder}/task.yaml")
    typer.echo(f"next: edit them, then `flip fl pack-task {folder}`")


@app.command("pack-task")
def pack_task(
    folder: Annotated[Path, typer.Argument(help="A folder written by `flip fl new-task`.")],
) -> None:
    """Check a custom task folder, write its task.json (model code included) and print its hash.

    Propose task.json to a project at the hub; each site approves the hash, and
    runs the model code only once it has. `flip site train --local --task
    FOLDER/task.json` tries it on one site's data first.

    Example: flip fl pack-task risk-net
    """
    from flip.fl.tasks.authoring import TaskFolderError
    from flip.fl.tasks.authoring import pack_task as pack

    with one_line_errors(TaskFolderError):
        _, digest, out = pack(folder)
    typer.echo(f"wrote {out}", err=True)
    typer.echo(digest)


def _print(result: dict) -> None:
    from flip.fl.experiment import ARMS

    table = Table(
        title=f"{result['strategy']}, {result['rounds']} rounds: accuracy / AUROC on held-out "
        "data [bootstrap 95% CI of the AUROC]"
    )
    table.add_column("site")
    table.add_column("n_test", justify="right")
    arms = [a for a in ARMS if a in result]
    for arm in arms:
        name = arm
        if arm == "best_round":
            name = f"best round ({result['selection']['best_round']}, on validation)"
        table.add_column(name, justify="right")

    def cell(metrics: dict) -> str:
        auroc, ci = metrics["auroc"], metrics.get("auroc_ci")
        area = "n/a" if auroc is None else f"{auroc:.3f}"
        interval = f" [{ci[0]:.2f}-{ci[1]:.2f}]" if ci else ""
        return f"{metrics['accuracy']:.3f} / {area}{interval}"

    for name, metrics in result["federated"]["per_site"].items():
        table.add_row(
            name, str(metrics["n_test"]), *(cell(result[a]["per_site"][name]) for a in arms)
        )
    table.add_row("[bold]overall", "", *(cell(result[a]["overall"]) for a in arms))
    Console().print(table)


app.command("run-task")(run_task)
