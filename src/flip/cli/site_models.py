"""`flip site models …`: the pretrained weights this site holds, by the name tasks use."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from flip.cli.errors import one_line_errors

app = typer.Typer(
    help="Pretrained weights: register local files by name; tasks name them with their SHA-256.",
    no_args_is_help=True,
)

SiteConfigOption = Annotated[Path, typer.Option("--site-config", help="The site's site.yaml.")]
ByOption = Annotated[str, typer.Option(help="Who does it (for the audit log).")]


def _ledger(site_config: Path):
    from flip.config import SiteConfig
    from flip.data.ledger import Ledger

    if not site_config.exists():
        raise FileNotFoundError(f"no site config at {site_config}")
    return Ledger(SiteConfig.load(site_config).ledger)


@app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="The name tasks give (weights.name).")],
    path: Annotated[
        str, typer.Argument(help="A weights file, or a model folder (e.g. Hugging Face).")
    ],
    sha256: Annotated[
        str | None,
        typer.Option("--sha256", help="Register only if the bytes hash to this (the publisher's)."),
    ] = None,
    site_config: SiteConfigOption = Path("site.yaml"),
    by: ByOption = "site-admin",
) -> None:
    """Register PATH as NAME (replacing an earlier NAME), hashing its bytes; audited.

    Example: flip site models add minilm /opt/models/all-MiniLM-L6-v2 --site-config site.yaml
    """
    from flip.data.pretrained import PretrainedError, add_model

    if not path.strip():
        # An empty PATH (a `$(...)` that printed nothing) would otherwise be the current folder.
        raise typer.BadParameter("empty: give the weights file or model folder", param_hint="PATH")
    with one_line_errors(PretrainedError), _ledger(site_config) as ledger:
        entry = add_model(ledger, name, Path(path), by, sha256)
    typer.echo(f"registered {name}: {entry['path']} sha256 {entry['sha256']}")


@app.command("list")
def list_models(
    site_config: SiteConfigOption = Path("site.yaml"),
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The registered models: name, SHA-256, size and path.

    Example: flip site models list --site-config site.yaml --json
    """
    from flip.data.ledger import LedgerTampered
    from flip.data.pretrained import registered

    with one_line_errors(LedgerTampered), _ledger(site_config) as ledger:
        models = registered(ledger)
    if as_json:
        typer.echo(json.dumps(models))
        return
    table = Table(title="Pretrained models")
    for column in ("name", "sha256", "bytes", "path", "added by"):
        table.add_column(column)
    for name, m in sorted(models.items()):
        table.add_row(name, str(m["sha256"]), str(m["bytes"]), str(m["path"]), str(m["by"]))
    Console().print(table)


@app.command("remove")
def remove(
    name: Annotated[str, typer.Argument(help="The registered name.")],
    site_config: SiteConfigOption = Path("site.yaml"),
    by: ByOption = "site-admin",
) -> None:
    """Unregister NAME (the file stays where it is); audited.

    Example: flip site models remove minilm --site-config site.yaml
    """
    from flip.data.pretrained import PretrainedError, remove_model

    with one_line_errors(PretrainedError), _ledger(site_config) as ledger:
        remove_model(ledger, name, by)
    typer.echo(f"removed {name}")
