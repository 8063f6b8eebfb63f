"""`flip hub …`: run the hub."""

from __future__ import annotations

import gc
import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Hub commands.", no_args_is_help=True)


@app.command()
def serve(
    db: Annotated[
        str, typer.Option(help="Hub database URL (SQLite or PostgreSQL).")
    ] = "sqlite:///hub.sqlite",
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8700,
    log_level: Annotated[
        str, typer.Option(help="uvicorn log level: critical, error, warning, info or debug.")
    ] = "info",
    flower: Annotated[
        bool,
        typer.Option(
            help="Also run a Flower SuperLink (TLS, SuperNode authentication) that trains "
            "deployment runs; the sites' agents connect their SuperNodes to it."
        ),
    ] = False,
    flower_port: Annotated[int, typer.Option(help="The SuperLink's port.")] = 9092,
    flower_address: Annotated[
        str | None,
        typer.Option(
            help="Host name or address the sites reach the SuperLink at (default: --host, "
            "or this machine's name when --host is 0.0.0.0); "
            "it goes into the SuperLink's certificate."
        ),
    ] = None,
    flower_dir: Annotated[
        Path,
        typer.Option(
            help="The SuperLink's folder: its database, TLS files, node keys and each run's "
            "models, metrics and checkpoints (a run left running resumes from there)."
        ),
    ] = Path("hub-flower"),
    round_timeout: Annotated[
        float, typer.Option(help="Seconds a deployment round waits for a site's reply.", min=1)
    ] = 300.0,
    signing_key: Annotated[
        Path,
        typer.Option(
            help="The hub's Ed25519 private key (made 0600 on first start): it signs the "
            "audit heads the sites keep and the run certificates. It never leaves the hub."
        ),
    ] = Path("hub-signing.key"),
    max_token_days: Annotated[
        int,
        typer.Option(help="The longest a user's API token may live, in days.", min=1),
    ] = 90,
    max_tokens_per_user: Annotated[
        int,
        typer.Option(
            help="Live API tokens one user may hold at once; past it, making one answers 409.",
            min=1,
        ),
    ] = 20,
    login_attempts: Annotated[
        int,
        typer.Option(
            help="Wrong passwords allowed per account within --login-window (per client "
            "address: four times as many) before login answers 429.",
            min=1,
        ),
    ] = 5,
    login_window: Annotated[
        float, typer.Option(help="Seconds a wrong password counts against a login.", min=1)
    ] = 900.0,
    behind_tls: Annotated[
        bool,
        typer.Option(
            help="The hub sits behind a reverse proxy that ends TLS: the web app's cookies "
            "carry Secure and the proxy's X-Forwarded-Proto/-For headers are believed "
            "(without it they are ignored)."
        ),
    ] = False,
    vocabulary: Annotated[
        Path | None,
        typer.Option(
            help="An OHDSI Athena download's folder, or a subset of one (CONCEPT.csv, and "
            "CONCEPT_RELATIONSHIP.csv for source codes), that the cohort builder's concept "
            "search reads; without it researchers type concept ids."
        ),
    ] = None,
    registry: Annotated[
        Path | None,
        typer.Option(
            help="The model registry's folder the models pages and API read (default: "
            "FLOWER_DIR/models with --flower; none without)."
        ),
    ] = None,
) -> None:
    """Serve the hub API; on a new database, create the admin and print their token once.

    With --flower the hub also runs Flower's SuperLink: a researcher's deployment run
    (`runtime: deployment`) trains there once it is set running, on the sites that
    joined it, and the hub records its rounds and its end. Example:

        flip hub serve --db sqlite:///hub.sqlite --flower --flower-address hub.example.org
    """
    import uvicorn
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from flip.cli.hub_session import fail
    from flip.hub.app import bootstrap_admin, create_app
    from flip.hub.concepts import VocabularyProblem
    from flip.hub.federation import Federation
    from flip.hub.policy import LONGEST_TOKEN_DAYS, AccessPolicy
    from flip.hub.transactions import SWITCH_INTERVAL
    from flip.ports import port_problem
    from flip.signing import load_or_create_key

    if max_token_days > LONGEST_TOKEN_DAYS:
        raise typer.BadParameter(
            f"{max_token_days} is over the longest cap, {LONGEST_TOKEN_DAYS} days",
            param_hint="--max-token-days",
        )
    if problem := port_problem(host, port):
        fail(f"--port {port}: cannot listen on {host}:{port} ({problem})")
    federation = None
    if flower:
        from flip.cli.errors import one_line_errors
        from flip.fl.runtime.flower import available

        with one_line_errors():
            if not available():
                raise ValueError(
                    "--flower needs flower-superlink and flwr beside this Python "
                    "(pip install 'flwr[simulation]==1.41.0')"
                )
        federation = Federation(
            flower_dir.resolve(),
            host=host,
            port=flower_port,
            public_host=flower_address,
            round_timeout=round_timeout,
        )
        typer.echo(f"Flower SuperLink on {federation.superlink.address}", err=True)
    policy = AccessPolicy(
        max_token_days=max_token_days,
        max_tokens_per_user=max_tokens_per_user,
        account_failures=login_attempts,
        address_failures=4 * login_attempts,
        failure_window=login_window,
    )
    try:
        if signing_key.exists():
            load_or_create_key(signing_key.resolve())
    except ValueError as exc:
        fail(
            f"--signing-key {signing_key}: not an Ed25519 private key (PEM): {exc}".split(". See")[
                0
            ]
        )
    try:
        app_ = create_app(
            db,
            federation=federation,
            policy=policy,
            signing_key=signing_key.resolve(),
            behind_tls=behind_tls,
            vocabulary=vocabulary,
            registry=None if registry is None else registry.resolve(),
        )
    except VocabularyProblem as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except ArgumentError:
        fail(f"--db {db}: not a database URL (sqlite:///hub.sqlite or postgresql://...)")
    except SQLAlchemyError as exc:
        fail(f"--db {db}: cannot use the database ({str(exc).splitlines()[0]})")
    except OSError as exc:
        fail(f"{exc.filename}: {exc.strerror}")
    token = bootstrap_admin(app_.state.engine, days=policy.max_token_days)
    if token:
        typer.echo(
            f"admin token (shown once, keep it safe; it expires in {policy.max_token_days} days): "
            f"{token}",
            err=True,
        )
    typer.echo(f"web app on http://{host}:{port}/ (sign in with a user's password)", err=True)
    typer.echo(f"hub API on http://{host}:{port}/docs", err=True)
    sys.setswitchinterval(SWITCH_INTERVAL)
    # What is loaded by now lives as long as the hub: a full collection need not walk
    # it again (~60 ms with every request stalled, twice in 20 s of `flip bench hub`).
    gc.collect()
    gc.freeze()
    uvicorn.run(app_, host=host, port=port, log_level=log_level, proxy_headers=behind_tls)


@app.command()
def migrate(
    db: Annotated[
        str, typer.Option(help="Hub database URL (SQLite or PostgreSQL).")
    ] = "sqlite:///hub.sqlite",
) -> None:
    """Bring the hub database to the newest schema (Alembic); safe to run again.

    Example: flip hub migrate --db postgresql+psycopg://flip@db/hub
    """
    from flip.cli.errors import one_line_errors
    from flip.hub.db import connect

    with one_line_errors():
        connect(db).dispose()
    typer.echo(f"hub database at the newest schema: {db}")


@app.command("public-key")
def public_key(
    signing_key: Annotated[Path, typer.Option(help="The hub's Ed25519 private key file.")] = Path(
        "hub-signing.key"
    ),
) -> None:
    """Print the hub's public key (PEM): what `flip verify --hub-key` trusts.

    Example: flip hub public-key --signing-key hub-signing.key > hub.pub
    """
    from flip.cli.errors import one_line_errors
    from flip.signing import load_or_create_key, public_pem

    with one_line_errors():
        if not signing_key.exists():
            raise FileNotFoundError(f"no hub signing key at {signing_key}")
        typer.echo(public_pem(load_or_create_key(signing_key)), nl=False)


@app.command("rotate-key")
def rotate_key(
    signing_key: Annotated[Path, typer.Option(help="The hub's Ed25519 private key file.")] = Path(
        "hub-signing.key"
    ),
) -> None:
    """Replace the hub's signing key with a new one (stop the hub first); print the new public
    key, which every site then trusts with `flip site trust-hub-key`. The old public key is
    kept beside it (KEY.retired.pub): the hub still accepts heads the sites kept under it,
    and verifiers use it for certificates issued before.

    Example: flip hub rotate-key --signing-key hub-signing.key > hub-new.pub
    """
    from flip.cli.errors import one_line_errors
    from flip.signing import public_pem, retired_path
    from flip.signing import rotate_key as rotate

    with one_line_errors():
        fresh = rotate(signing_key)
    typer.echo(public_pem(fresh), nl=False)
    typer.echo(
        f"hub signing key rotated; the old public key is kept in {retired_path(signing_key)}",
        err=True,
    )


audit_app = typer.Typer(help="The hub's hash-chained audit log.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")


@audit_app.command("verify")
def audit_verify(
    db: Annotated[str, typer.Option(help="Hub database URL.")] = "sqlite:///hub.sqlite",
) -> None:
    """Check every entry of the audit log against its hash chain, and list each break the hub
    saw in a site's ledger (a signed head that did not extend the one before); exit 1 if any.

    Example: flip hub audit verify --db sqlite:///hub.sqlite
    """
    from flip.hub import anchors, audit
    from flip.hub.db import connect

    engine = connect(db)
    with engine.connect() as conn:
        broken, breaks = audit.verify(conn), anchors.ledger_breaks(conn)
    engine.dispose()
    if broken is not None:
        typer.echo(f"audit log altered: entry {broken} does not match its hash chain", err=True)
    for b in breaks:
        typer.echo(f"site {b['site']}: ledger {b['problem']}", err=True)
    if broken is not None or breaks:
        raise typer.Exit(1)
    typer.echo("audit log intact")


sites_app = typer.Typer(help="Sites, straight on the hub database.", no_args_is_help=True)
app.add_typer(sites_app, name="sites")


@sites_app.command("clear-key")
def sites_clear_key(
    name: Annotated[str, typer.Argument(help="The site's name.")],
    db: Annotated[str, typer.Option(help="Hub database URL.")] = "sqlite:///hub.sqlite",
) -> None:
    """Forget the signing key registered for a site that lost its `signing.key` (audited);
    its agent's next poll registers the new one. Check with the site first: a key you
    clear for someone else lets them sign as the site.

    Example: flip hub sites clear-key alpha --db sqlite:///hub.sqlite
    """
    from flip.cli.errors import one_line_errors
    from flip.hub import anchors
    from flip.hub.db import connect

    with one_line_errors(anchors.NoSuchSite, anchors.NoKey):
        engine = connect(db)
        try:
            with engine.begin() as conn:
                anchors.clear_site_key(conn, name, "hub:cli")
        finally:
            engine.dispose()
    typer.echo(f"site {name}: signing key cleared; its agent's next poll registers the new one")


users_app = typer.Typer(help="Users' access, straight on the hub database.", no_args_is_help=True)
app.add_typer(users_app, name="users")


@users_app.command("revoke")
def users_revoke(
    name: Annotated[str, typer.Argument(help="The user's name.")],
    db: Annotated[str, typer.Option(help="Hub database URL.")] = "sqlite:///hub.sqlite",
) -> None:
    """End every credential of a user (all API tokens, sessions, password login) until restored.

    Example: flip hub users revoke rita --db sqlite:///hub.sqlite
    """
    from flip.cli.errors import one_line_errors
    from flip.hub import access
    from flip.hub.db import connect

    with one_line_errors(access.NoSuchUser):
        engine = connect(db)
        try:
            with engine.begin() as conn:
                access.revoke(conn, name, "hub:cli")
        finally:
            engine.dispose()
    typer.echo(f"user {name}: access revoked (a running hub sees it within 5 seconds)")


@users_app.command("restore")
def users_restore(
    name: Annotated[str, typer.Argument(help="The user's name.")],
    db: Annotated[str, typer.Option(help="Hub database URL.")] = "sqlite:///hub.sqlite",
    days: Annotated[
        int,
        typer.Option(
            help="The new API token's lifetime, in days: keep it within the hub's "
            "--max-token-days (never over 3,650).",
            min=1,
        ),
    ] = 90,
) -> None:
    """Give a revoked user (an admin locked out, say) access again; print their new token once.

    Example: flip hub users restore admin --db sqlite:///hub.sqlite --days 30
    """
    from flip.cli.errors import one_line_errors
    from flip.hub import access
    from flip.hub.db import connect
    from flip.hub.policy import LONGEST_TOKEN_DAYS

    if days > LONGEST_TOKEN_DAYS:
        raise typer.BadParameter(
            f"{days} is over the longest cap, {LONGEST_TOKEN_DAYS} days", param_hint="--days"
        )

    with one_line_errors(access.NoSuchUser):
        engine = connect(db)
        try:
            with engine.begin() as conn:
                _, _, token = access.restore(conn, name, "hub:cli", days)
        finally:
            engine.dispose()
    typer.echo(f"user {name}: access restored; their new API token (shown once): {token}")
