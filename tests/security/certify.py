"""`flip verify` on a run certificate, with the public keys it is to trust."""

import subprocess
from pathlib import Path

from flip.signing import load_or_create_key, public_pem
from tests.e2e.processes import FLIP


def verify(path: Path, *args: str) -> subprocess.CompletedProcess:
    """`flip verify PATH ARGS`, its output captured."""
    command = [*FLIP, "verify", str(path), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def trusted_keys(folder: Path, hub_key_file: Path, site_keys: dict[str, Path]) -> list[str]:
    """Trusted key files (PEM, written to `folder`) for `flip verify`: the hub's public key
    and each site's."""
    (folder / "hub.pub").write_text(public_pem(load_or_create_key(hub_key_file)))
    args = ["--hub-key", str(folder / "hub.pub")]
    for name, key_file in site_keys.items():
        (folder / f"{name}.pub").write_text(public_pem(load_or_create_key(key_file)))
        args += ["--site-key", f"{name}={folder / f'{name}.pub'}"]
    return args
