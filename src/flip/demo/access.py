"""The demo's ways in: a random password for the demo researcher on the demo's hub and one for
each demo site's console admin, kept in OUT/demo-credentials.json (0600), and the words that
tell the user how to open them in a browser.

The passwords are made fresh for each demo run and only open the demo's own files (its hub
database and its sites' consoles) on this machine.
"""

from __future__ import annotations

import secrets
import shlex
from dataclasses import dataclass
from pathlib import Path

import orjson

from flip.config import SiteConfig
from flip.data.ledger import Ledger
from flip.data.terminology.athena import starter_folder
from flip.private_files import write_private
from flip.site.console.passwords import password_path, set_password

CREDENTIALS = "demo-credentials.json"
RESEARCHER = "researcher"


@dataclass(frozen=True)
class DemoAccess:
    """The demo researcher's password, and each site's console admin and password."""

    researcher_password: str
    consoles: dict[str, tuple[str, str]]

    @classmethod
    def new(cls, sites: list[str]) -> DemoAccess:
        """Fresh random passwords for the researcher and for an admin of each site's console."""
        return cls(
            secrets.token_urlsafe(12),
            {site: (f"{site}-admin", secrets.token_urlsafe(12)) for site in sites},
        )

    def save(self, out: Path) -> Path:
        """Write OUT/demo-credentials.json (0600); its path."""
        path = out / CREDENTIALS
        body = {
            "note": "demo credentials: they open only this demo's hub database and site consoles",
            "researcher": {"name": RESEARCHER, "password": self.researcher_password},
            "consoles": {s: {"name": n, "password": p} for s, (n, p) in self.consoles.items()},
        }
        write_private(path, orjson.dumps(body, option=orjson.OPT_INDENT_2))
        return path

    @classmethod
    def load(cls, out: Path) -> DemoAccess:
        """The ways in a demo run wrote under `out`; ValueError naming the file if none."""
        path = out / CREDENTIALS
        if not path.exists():
            raise ValueError(f"no {CREDENTIALS} in {out}: run `flip demo --out {out}` first")
        try:
            body = orjson.loads(path.read_bytes())
            consoles = {s: (c["name"], c["password"]) for s, c in body["consoles"].items()}
            return cls(body["researcher"]["password"], consoles)
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"{path}: not a demo credentials file ({exc!r})") from None

    def set_console_passwords(self, site_configs: dict[str, Path]) -> None:
        """Give each site's console its demo admin and password (audited in the site's ledger)."""
        for site, config_path in site_configs.items():
            name, password = self.consoles[site]
            config = SiteConfig.load(config_path)
            set_password(password_path(config.ledger), name, password)
            with Ledger(config.ledger) as ledger:
                ledger.record("console.password.set", {"by": name, "demo": True})


def site_configs(out: Path) -> dict[str, Path]:
    """Each demo site's site.yaml under `out`, by site name."""
    return {p.parent.name: p for p in sorted((out / "sites").glob("*/site.yaml"))}


def hub_url(out: Path) -> str:
    """The SQLite URL of the demo's hub database."""
    return f"sqlite:///{out / 'hub.sqlite'}"


def instructions(out: Path, access: DemoAccess) -> str:
    """How to open the demo's hub and each site's console in a browser, and how to sign in."""
    q = shlex.quote
    key = out / "hub-signing.key"
    lines = [
        "See it in a browser. Either let the demo serve everything (Ctrl-C stops it):",
        f"    flip demo --serve --no-run --out {q(str(out))}",
        "or start each yourself, one terminal each:",
        f"    flip hub serve --db {q(hub_url(out))} --signing-key {q(str(key))} "
        f"--vocabulary {q(str(starter_folder()))}",
        "  then open http://127.0.0.1:8700/ and sign in as "
        f"{RESEARCHER} with the password {access.researcher_password}",
        "  (the first sign-in sets up an authenticator app: scan the QR code it shows).",
    ]
    for port, (site, config) in enumerate(site_configs(out).items(), start=8401):
        name, password = access.consoles[site]
        lines += [
            f"    flip site console --site-config {q(str(config))} --port {port}",
            f"  then open http://127.0.0.1:{port}/ and sign in as {name} "
            f"with the password {password}",
        ]
    lines += [
        f"These are demo credentials, made for this run and kept in {out / CREDENTIALS}:",
        "they open only this demo's hub database and site consoles on this machine.",
    ]
    return "\n".join(lines)
