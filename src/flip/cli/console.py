"""`flip site console …`: the site admin's web console on this machine, and its passwords."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flip.cli.errors import one_line_errors

app = typer.Typer(
    help="The site admin's web console (approvals, policy, data, audit) on 127.0.0.1.",
    invoke_without_command=True,
)

SiteConfigOption = Annotated[Path, typer.Option("--site-config", help="The site's site.yaml.")]


def _site(path: Path):
    from flip.config import SiteConfig

    if not path.exists():
        raise FileNotFoundError(f"no site config at {path}")
    return SiteConfig.load(path)


@app.callback()
def serve(
    ctx: typer.Context,
    site_config: SiteConfigOption = Path("site.yaml"),
    host: Annotated[
        str,
        typer.Option(help="Address to serve on; keep 127.0.0.1 unless a TLS proxy fronts it."),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8400,
    behind_tls: Annotated[
        bool,
        typer.Option(
            help="A TLS proxy in front ends HTTPS: cookies carry Secure and its "
            "X-Forwarded-For/-Proto headers are believed (without it they are ignored)."
        ),
    ] = False,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            help="Another name the console is reached by (a TLS proxy's public name), beside "
            "127.0.0.1, localhost, [::1] and --host; a request naming any other Host gets 400. "
            "Repeat for several."
        ),
    ] = None,
) -> None:
    """Serve the console of the site whose site.yaml is given (sign in with a console
    password set by `flip site console set-password`)."""
    if ctx.invoked_subcommand is not None:
        return
    import uvicorn

    from flip.site.console import create_app
    from flip.site.console.passwords import password_path, read
    from flip.webkit.security import LOOPBACK_NAMES, host_name

    with one_line_errors():
        site = _site(site_config)
        if not read(password_path(site.ledger)):
            raise ValueError(
                "no console password is set: run `flip site console set-password "
                f"--site-config {site_config} --user YOUR-NAME` first"
            )
        # Only its own names: a page of another site rebound to 127.0.0.1 reaches nothing.
        names = {f"[{host}]" if ":" in host else host, *(allowed_host or [])}
        hosts = LOOPBACK_NAMES | {host_name(n) for n in names}
        application = create_app(site_config.resolve(), behind_tls=behind_tls, hosts=hosts)
    typer.echo(f"{site.name}: site console at http://{host}:{port}/", err=True)
    # X-Forwarded-For names the client only when a proxy the operator put in front sets it:
    # else any local client could name a new address on each guess and pass the throttle.
    uvicorn.run(application, host=host, port=port, log_level="warning", proxy_headers=behind_tls)


@app.command("set-password")
def set_password(
    user: Annotated[str, typer.Option(help="The site admin's name, as the ledger records it.")],
    site_config: SiteConfigOption = Path("site.yaml"),
    password: Annotated[
        str,
        typer.Option(
            prompt=True,
            hide_input=True,
            confirmation_prompt=True,
            help="At least 12 characters (asked for when not given).",
        ),
    ] = ...,
) -> None:
    """Set (or change) a site admin's console password: an argon2id hash in a 0600 file
    beside the ledger; audited in the ledger.

    Example: flip site console set-password --site-config site.yaml --user dana
    """
    from flip.data.ledger import Ledger
    from flip.site.console.passwords import password_path, set_password

    with one_line_errors():
        site = _site(site_config)
        path = password_path(site.ledger)
        set_password(path, user, password)
        with Ledger(site.ledger) as ledger:
            ledger.record("console.password.set", {"by": user})
    typer.echo(f"{site.name}: console password set for {user} ({path})")
