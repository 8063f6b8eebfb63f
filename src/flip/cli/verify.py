"""`flip verify CERT`: check a run certificate offline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flip.cli.errors import one_line_errors
from flip.problems import read_json


def verify(
    certificate: Annotated[Path, typer.Argument(help="The run certificate (JSON).")],
    hub_key: Annotated[
        Path | None,
        typer.Option(help="The hub's public key (PEM) you trust; default: the one it carries."),
    ] = None,
    site_key: Annotated[
        list[str] | None,
        typer.Option(help="NAME=FILE: a site's public key (PEM) you trust; repeatable."),
    ] = None,
) -> None:
    """Check a run certificate offline: every field against its signed digest, the hub's
    signature and each site's countersignature; exit 1 naming each field or signer that fails.

    Without --hub-key/--site-key it checks with the keys the certificate carries (the ones
    registered at enrolment): pin them with keys you got from the hub and sites themselves.

    Example: flip verify run-7.json --hub-key hub.pub --site-key alpha=alpha.pub
    """
    from flip.certificate import problems, site_names

    with one_line_errors():
        document = read_json(certificate)
        trusted_sites = {}
        for pair in site_key or []:
            name, sep, file = pair.partition("=")
            if not sep or not name or not file:
                raise ValueError(f"--site-key takes NAME=FILE, not {pair!r}")
            trusted_sites[name] = Path(file).read_text(encoding="ascii")
        trusted_hub = None if hub_key is None else hub_key.read_text(encoding="ascii")
    found = problems(document, trusted_hub, trusted_sites)
    for problem in found:
        typer.echo(problem, err=True)
    if found:
        raise typer.Exit(1)
    fields = document["fields"]
    pinned = "pinned keys" if hub_key is not None else "the keys it carries (not pinned)"
    typer.echo(
        f"certificate of run {fields['run']['id']} holds: signed by the hub, countersigned by "
        f"{', '.join(site_names(fields))}; checked with {pinned}"
    )
