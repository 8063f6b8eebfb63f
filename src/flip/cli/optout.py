"""`flip site optout …`: the national data opt-out list the site's IG team maintains."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from flip.cli.errors import one_line_errors

app = typer.Typer(
    help="National data opt-out: patients on the list are left out of all research use.",
    no_args_is_help=True,
)


@app.command("load")
def load(
    file: Annotated[
        Path,
        typer.Argument(
            help="The opt-out list: one NHS number or MRN a line (as the store's "
            "person_source_value holds it); blank lines and lines starting # are skipped.",
            exists=True,
            dir_okay=False,
        ),
    ],
    site_config: Annotated[
        Path | None,
        typer.Option(
            "--site-config",
            help="The site's site.yaml: its store, its min_cell_size, and its ledger, "
            "where the load is audited (wins over --store and --min-cell).",
        ),
    ] = None,
    store: Annotated[
        str, typer.Option("--store", help="DuckDB file path, or a SQLAlchemy URL.")
    ] = "store.duckdb",
    min_cell: Annotated[
        int, typer.Option(help="Report the persons left out only when 0 or at least this.")
    ] = 10,
    allow_empty: Annotated[
        bool,
        typer.Option(help="Load a FILE without identifiers: no patient is left out any more."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Make the store's opt-out list exactly FILE's (hashed, never kept in clear).

    Loading the same file again changes nothing; a patient no longer in the file is no
    longer left out. A bad line loads nothing, nor an empty FILE without --allow-empty.

    Example: flip site optout load optouts.txt --site-config site.yaml
    """
    from flip.config import SiteConfig
    from flip.data.cdm.store import open_store
    from flip.data.cohort.optout import OptOutError, load_optout
    from flip.data.ledger import Ledger

    with one_line_errors(OptOutError):
        site = SiteConfig.load(site_config) if site_config is not None else None
        if site is not None:
            store, min_cell = site.store, site.policy.min_cell_size
        s = open_store(store)
        try:
            s.check()
            done = load_optout(s, file, min_cell, allow_empty=allow_empty)
        finally:
            s.close()
        report = {
            "identifiers": done.identifiers,
            "added": done.added,
            "removed": done.removed,
            "excluded": done.excluded.count,
            "suppressed": done.excluded.suppressed,
            "threshold": done.excluded.threshold,
        }
        if site is not None:
            with Ledger(site.ledger) as ledger:
                ledger.record("optout.loaded", {"file": str(file), **report})
    if as_json:
        typer.echo(json.dumps(report))
        return
    excluded = f"<{min_cell} (suppressed)" if done.excluded.suppressed else done.excluded.count
    typer.echo(
        f"{done.identifiers} identifiers on the list ({done.added} added, {done.removed} "
        f"removed); persons in the store left out: {excluded}"
    )
