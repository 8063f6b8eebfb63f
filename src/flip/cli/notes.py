"""`flip site notes …`: de-identify and extract concepts from the store's notes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from flip.cli.errors import one_line_errors

app = typer.Typer(help="Clinical notes: de-identification and concept extraction.")


@app.command("process")
def process(
    store: Annotated[
        str, typer.Option("--store", help="DuckDB file path, or a SQLAlchemy URL.")
    ] = "store.duckdb",
    as_json: Annotated[bool, typer.Option("--json", help="Print the counts as JSON.")] = False,
) -> None:
    """De-identify every note and write its concepts, with context, to note_nlp (re-runnable).

    Example: flip site notes process --store /tmp/flip-tour/north.duckdb
    """
    from dataclasses import asdict

    from flip.data.cdm.store import open_store
    from flip.data.notes.process import process_notes

    with one_line_errors():
        if "://" not in store and not Path(store).exists():
            raise FileNotFoundError(f"no store at {store}: create it with `flip site init`")
        s = open_store(store)
        s.check()
        report = process_notes(s)
        s.close()
    if as_json:
        typer.echo(json.dumps(asdict(report)))
        return
    typer.echo(
        f"{report.notes} notes -> {report.rows} note_nlp rows "
        f"({report.affirmed} affirmed, {report.unmapped} without a concept in the vocabulary)"
    )


@app.command("score")
def score(
    truth: Annotated[
        list[Path],
        typer.Argument(
            help="letters_phi.jsonl files (from `flip synth dermatology`), or text files marked "
            "by hand: [[KIND|text]] around each identifier, documents split by a ==== line."
        ),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """Measure de-identification precision and recall per PHI kind on labelled letters.

    Example: flip site notes score /tmp/flip-tour/derm/truth/*/letters_phi.jsonl --json
    """
    from flip.data.notes.score import read_labelled
    from flip.data.notes.score import score as measure

    with one_line_errors():
        rows = [row for path in truth for row in read_labelled(path)]
        figures = measure(rows)
    if as_json:
        typer.echo(json.dumps(figures, indent=2))
        return
    t = Table(title=f"De-identification on {len(rows)} letters")
    for column in ("kind", "labelled", "found", "precision", "recall"):
        t.add_column(column)
    for kind, f in figures.items():
        t.add_row(
            kind, str(f["labelled"]), str(f["found"]), f"{f['precision']:.4f}", f"{f['recall']:.4f}"
        )
    Console().print(t)
