"""Where `flip login` keeps the hub's address and the researcher's token (a 0600 file)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from flip.private_files import write_private


class NotLoggedIn(ValueError):
    """No saved credentials, or a file that holds none."""


@dataclass(frozen=True)
class Credentials:
    """A hub's address and the token its API accepts from this user."""

    hub: str
    token: str


def credentials_path() -> Path:
    """FLIP_CREDENTIALS, else $XDG_CONFIG_HOME/flip/credentials.json (~/.config by default)."""
    if explicit := os.environ.get("FLIP_CREDENTIALS"):
        return Path(explicit)
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "flip" / "credentials.json"


def save(credentials: Credentials) -> Path:
    """Write the credentials (0600, in a 0700 folder); the file's path."""
    path = credentials_path()
    data = {"hub": credentials.hub, "token": credentials.token}
    write_private(path, json.dumps(data, indent=2).encode())
    return path


def load() -> Credentials:
    """The saved credentials; NotLoggedIn (saying to run `flip login`) if there are none."""
    path = credentials_path()
    if not path.exists():
        raise NotLoggedIn("not logged in to a hub: run `flip login HUB_URL` first")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Credentials(hub=str(data["hub"]), token=str(data["token"]))
    except (ValueError, KeyError, TypeError):
        raise NotLoggedIn(
            f"{path} holds no hub and token: run `flip login HUB_URL` again"
        ) from None


def forget() -> bool:
    """Delete the saved credentials; whether there were any."""
    path = credentials_path()
    if not path.exists():
        return False
    path.unlink()
    return True
