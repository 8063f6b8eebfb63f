"""The researcher commands' connection to the hub, and their errors in one line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console

from flip.cli.credentials import load
from flip.cli.errors import print_error
from flip.problems import as_text
from flip.problems import read_json as read_file_json

if TYPE_CHECKING:  # httpx and the client are imported when a command talks to the hub
    from flip.hub.client import HubError, ResearcherClient


def explain(error: HubError) -> str:
    """What went wrong, in words a researcher acts on (the hub's words with control
    characters written out: it may quote what a site or another user sent)."""
    from flip.hub.client import HubUnreachable

    detail = as_text(error.detail)
    if isinstance(error, HubUnreachable) or not error.status:
        return as_text(str(error))
    if error.status == 401:
        return f"the hub refused your token ({detail}): run `flip login HUB_URL` again"
    if error.status == 403:
        return f"not allowed: {detail}"
    if error.status == 404:
        return detail or "not found"
    return f"the hub refused: {detail or as_text(str(error))}"


@contextmanager
def hub_errors() -> Iterator[None]:
    """Turn hub refusals, a missing login and bad files into `error: …` and exit 1
    (never importing the site's data layer, as `one_line_errors` does)."""
    from flip.hub.client import HubError

    try:
        yield
    except HubError as exc:
        fail(explain(exc))
    except (OSError, ValueError) as exc:
        fail(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)


def fail(reason: str) -> None:
    """Print `error: REASON` (control characters written out) on stderr and exit 1."""
    print_error(reason)
    raise typer.Exit(1)


@contextmanager
def connected() -> Iterator[ResearcherClient]:
    """A client for the hub `flip login` saved, with hub errors reported in one line."""
    from flip.hub.client import ResearcherClient

    with hub_errors():
        saved = load()
        client = ResearcherClient(saved.hub, saved.token)
        try:
            yield client
        finally:
            client.close()


def read_json(path: Path, what: str) -> dict[str, Any]:
    """A JSON object from `path`; ValueError naming the file and the problem otherwise."""
    value = read_file_json(path)
    if not isinstance(value, dict):
        raise ValueError(f"{path}: {what} must be a JSON object")
    return value


def print_json(value: Any) -> None:
    """Print `value` as one line of JSON on stdout."""
    typer.echo(json.dumps(value, default=str))


def hub_console(*, stderr: bool = False) -> Console:
    """A console that prints what the hub or another's file sends as text: a name like
    `[red]x[/]` is never markup."""
    return Console(markup=False, stderr=stderr)
