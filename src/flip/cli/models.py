"""`flip models …`: the model registry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from flip.cli.errors import one_line_errors

app = typer.Typer(
    help="Registered models: list, show their lineage and card, export, pull from a hub.",
    no_args_is_help=True,
)

RegistryOption = Annotated[
    Path | None, typer.Option(help="Registry folder (default: FLIP_REGISTRY or ~/.flip/models).")
]


def _registry(path: Path | None) -> Path:
    from flip.fl.registry import default_registry

    return path or default_registry()


@app.command("list")
def list_models(
    registry: RegistryOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every registered model, newest first.

    Example: flip models list --registry demo-out/models
    """
    from flip.fl.registry import list_models as records

    found = records(_registry(registry))
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {
                        "id": r.id,
                        **{
                            k: r.lineage.get(k)
                            for k in (
                                "task",
                                "strategy",
                                "rounds",
                                "registered_at",
                                "best_round",
                                "final_model",
                            )
                        },
                    }
                    for r in found
                ]
            )
        )
        return
    from flip.cli.hub_session import hub_console
    from flip.problems import as_text

    table = Table(title=f"Models in {_registry(registry)}")
    for column in ("id", "task", "strategy", "rounds", "sites", "overall AUROC", "registered"):
        table.add_column(column)
    for r in found:
        lineage = as_text(r.lineage)  # pulled from a hub: it names the sites' metrics
        overall = lineage.get("metrics", {}).get("overall", {})
        auroc = overall.get("auroc")
        table.add_row(
            as_text(r.id),
            lineage["task"],
            str(lineage.get("strategy")),
            str(lineage.get("rounds")),
            str(len(lineage.get("sites", {}))),
            "n/a" if auroc is None else f"{auroc:.3f}",
            lineage["registered_at"],
        )
    hub_console().print(table)


@app.command()
def show(
    model_id: Annotated[str, typer.Argument(help="The model's id.")],
    registry: RegistryOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the lineage as JSON.")] = False,
) -> None:
    """A model's card (or, with --json, its whole lineage).

    Example: flip models show mace-5y-3fa94c2e1b7d --registry demo-out/models
    """
    from flip.fl.registry import RegistryError, load

    with one_line_errors(RegistryError):
        record = load(_registry(registry), model_id)
    if as_json:
        typer.echo(json.dumps(record.lineage))
        return
    from rich.markdown import Markdown  # markdown-it: only to show a card

    from flip.problems import as_text

    # A card pulled from a hub names the sites' metrics: shown with control characters
    # written out, and each link with its address.
    card = (record.path / "MODEL_CARD.md").read_text(encoding="utf-8")
    shown = "\n".join(as_text(line) for line in card.splitlines())
    Console().print(Markdown(shown, hyperlinks=False))


@app.command("export")
def export_model(
    model_id: Annotated[str, typer.Argument(help="The model's id.")],
    out: Annotated[Path, typer.Option(help="File to write.")],
    fmt: Annotated[
        str,
        typer.Option("--format", help="torch (state dict) or onnx; xgboost for tree models."),
    ] = "torch",
    registry: RegistryOption = None,
) -> None:
    """Export a model as a torch state dict or an ONNX graph (a tree model as XGBoost JSON).

    Example: flip models export mace-5y-3fa94c2e1b7d --format onnx --out model.onnx
    """
    from flip.fl.registry import RegistryError, export, load

    with one_line_errors(RegistryError):
        path = export(load(_registry(registry), model_id), fmt, out)
    typer.echo(f"wrote {path}")


@app.command()
def pull(
    run_id: Annotated[int, typer.Argument(help="A completed deployment run's id.")],
    out: Annotated[Path, typer.Option(help="Folder to put the model's folder in.")] = Path("."),
    best: Annotated[bool, typer.Option(help="The best round's model, not the final one.")] = False,
) -> None:
    """Download the model a run registered at the hub: weights, lineage and model card.

    It lands in OUT/MODEL_ID/, a registry folder: `flip models show MODEL_ID
    --registry OUT` reads its card, `flip models export` converts it.

    Example: flip models pull 7 --out models/
    """
    from flip.cli.hub_session import connected, fail, hub_errors
    from flip.cli.model_archive import unpack

    key = "best_model" if best else "model"
    with connected() as hub:
        model_id = (hub.run(run_id).get("results") or {}).get(key)
        if not isinstance(model_id, str):
            which = "best-round model" if best else "model"
            fail(
                f"run {run_id} has no {which} at this hub "
                "(only completed deployment runs register one)"
            )
        archive = hub.model_download(model_id, "zip")
    with hub_errors():
        folder = unpack(archive, out)
    typer.echo(f"wrote {folder}")
