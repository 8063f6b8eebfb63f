"""`flip login` and `flip logout`: the researcher's session with a hub."""

from __future__ import annotations

from typing import Annotated

import typer

from flip.cli.credentials import Credentials, forget, load, save
from flip.cli.hub_session import hub_errors


def login(
    hub: Annotated[str, typer.Argument(help="The hub's address, e.g. https://hub.example.org.")],
    user: Annotated[str | None, typer.Option("--user", "-u", help="Your user name.")] = None,
    token: Annotated[
        str | None,
        typer.Option(help="An API token made by an admin or on the web (skips the password)."),
    ] = None,
    code: Annotated[
        str | None,
        typer.Option(help="Your TOTP (or recovery) code, once you enrolled one on the web."),
    ] = None,
    hours: Annotated[int, typer.Option(help="How long the session lasts (1 to 720).")] = 12,
) -> None:
    """Sign in to a hub and save its address and your token for the other commands.

    Asks for your user name and password (and TOTP code when you are enrolled),
    or saves an API token you already have; the file is private (0600):
    $XDG_CONFIG_HOME/flip/credentials.json, or FLIP_CREDENTIALS.

    Example: flip login https://hub.example.org --user rita
    """
    from flip.hub.client import HubError, ResearcherClient
    from flip.hub.client import login as open_session

    hub = hub.rstrip("/")
    with hub_errors():
        if token is None:
            user = user or typer.prompt("User name")
            password = typer.prompt("Password", hide_input=True)
            try:
                token = open_session(hub, user, password, code, hours)
            except HubError as exc:
                if exc.status != 401 or code is not None:
                    raise
                code = typer.prompt("One-time code (TOTP or recovery; blank if none)", default="")
                if not code:
                    raise
                token = open_session(hub, user, password, code, hours)
        client = ResearcherClient(hub, token)
        try:
            client.projects()  # the hub takes the token (403: a role that lists no projects)
        except HubError as exc:
            if exc.status != 403:
                raise
        finally:
            client.close()
        path = save(Credentials(hub=hub, token=token))
    typer.echo(f"logged in to {hub} (token saved in {path})")


def logout() -> None:
    """End your session at the hub and delete the saved token.

    Example: flip logout
    """
    from flip.hub.client import HubError, ResearcherClient

    with hub_errors():
        saved = load()
        client = ResearcherClient(saved.hub, saved.token)
        try:
            client.logout()
        except HubError as exc:
            if exc.status not in (400, 401):  # an API token, or a session already ended
                raise
        finally:
            client.close()
        forget()
    typer.echo(f"logged out of {saved.hub}")
