"""The site's pretrained weights: files its admin registered by name, hash-checked before use.

A task names an encoder's weights by a name and their SHA-256; the site resolves the name to
its own local copy (`flip site models add NAME PATH`) and uses it only when its bytes hash to
what the task names. The registry lives only as chained entries in the site's ledger
(`model.added`, `model.removed`), so every change is audited and an edit shows as tampering.
A path may be one file (its SHA-256) or a folder such as a Hugging Face model folder (the
SHA-256 of its manifest: one "<file sha256>  <relative path>" line per file, sorted).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flip.data.ledger import Ledger

ADDED, REMOVED, REFUSED = "model.added", "model.removed", "model.refused"
#: A registered name: what a task's weights.name must match.
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class PretrainedError(ValueError):
    """A name is not registered, or its weights are not the bytes the task or admin named."""


def file_sha256(path: Path) -> str:
    """The SHA-256 of one file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def weights_sha256(path: str | Path, held: Mapping[Path, bytes] | None = None) -> str:
    """The SHA-256 of a weights file, or of a folder's manifest of its files' SHA-256s; a file
    in `held` is hashed from those bytes (the ones its caller read once and loads), not re-read."""
    path, held = Path(path), held or {}

    def digest(file: Path) -> str:
        return hashlib.sha256(held[file]).hexdigest() if file in held else file_sha256(file)

    if path.is_file():
        return digest(path)
    if not path.is_dir():
        what = "not a regular file or a folder" if path.exists() else "no such file or folder"
        raise PretrainedError(f"{path}: {what}")
    found = list(path.rglob("*"))
    if linked := [p for p in found if p.is_symlink() and p.is_dir()]:
        raise PretrainedError(
            f"{linked[0]}: links to a folder, whose files would not be hashed: copy it in"
        )
    files = sorted(p for p in found if p.is_file())
    if not files:
        raise PretrainedError(f"{path}: the folder holds no files")
    if broken := [p for p in files if "\n" in str(p) or "\r" in str(p)]:
        raise PretrainedError(
            f"{broken[0]!r}: a path with a line break would make the folder's manifest "
            "ambiguous: rename it"
        )
    manifest = "".join(f"{digest(p)}  {p.relative_to(path).as_posix()}\n" for p in files)
    return hashlib.sha256(manifest.encode()).hexdigest()


def registered(ledger: Ledger) -> dict[str, dict[str, object]]:
    """Each registered name's path, sha256, size, who added it and when (from the chain)."""
    models: dict[str, dict[str, object]] = {}
    for action, detail in ledger.chained(frozenset({ADDED, REMOVED})):
        name = str(detail["name"])
        if action == ADDED:
            models[name] = {k: v for k, v in detail.items() if k != "name"}
        else:
            models.pop(name, None)
    return models


def add_model(
    ledger: Ledger, name: str, path: str | Path, by: str, sha256: str | None = None
) -> dict[str, object]:
    """Register `path` under `name` (replacing an earlier one), hashing its bytes; with
    `sha256`, refuse (audited) unless they hash to it."""
    if not NAME.match(name):
        raise PretrainedError(
            f"model name {name!r}: use letters, digits, '.', '_' or '-' (at most 100)"
        )
    resolved = Path(path).expanduser().resolve()
    found = weights_sha256(resolved)
    if sha256 is not None and found != sha256.lower():
        reason = f"{resolved}: SHA-256 {found} is not the {sha256} named: not registered"
        ledger.record(REFUSED, {"name": name, "path": str(resolved), "by": by, "reason": reason})
        raise PretrainedError(reason)
    size = (
        resolved.stat().st_size
        if resolved.is_file()
        else sum(p.stat().st_size for p in resolved.rglob("*") if p.is_file())
    )
    entry = {"name": name, "path": str(resolved), "sha256": found, "bytes": size, "by": by}
    ledger.record(ADDED, entry)
    return entry


def remove_model(ledger: Ledger, name: str, by: str) -> None:
    """Unregister `name` (audited); an unknown name is an error."""
    if name not in registered(ledger):
        raise PretrainedError(f"no model {name!r} is registered at this site")
    ledger.record(REMOVED, {"name": name, "by": by})


def resolve(ledger: Ledger, name: str, sha256: str) -> Path:
    """The local path of `name` once its bytes hash to the task's `sha256`; otherwise a
    PretrainedError naming the reason, which is audited as `model.refused`."""
    entry = registered(ledger).get(name)
    reason = None
    if not _SHA256.match(sha256.lower()):
        reason = f"the task names weights {name!r} by {sha256!r}, not a SHA-256"
    elif entry is None:
        reason = f"no model {name!r} is registered at this site (flip site models add)"
    elif entry["sha256"] != sha256.lower():
        reason = (
            f"model {name!r} here is SHA-256 {entry['sha256']}, not the task's {sha256}: refused"
        )
    else:
        try:
            found = weights_sha256(str(entry["path"]))
        except (OSError, PretrainedError) as exc:
            found, reason = None, f"model {name!r} at {entry['path']} cannot be read: {exc}"
        if found is not None and found != entry["sha256"]:
            reason = (
                f"model {name!r} at {entry['path']} now hashes to {found}, not the "
                f"{entry['sha256']} registered: refused"
            )
    if reason is not None:
        ledger.record(REFUSED, {"name": name, "sha256": sha256, "reason": reason})
        raise PretrainedError(reason)
    return Path(str(entry["path"]))
