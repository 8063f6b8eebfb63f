"""Ed25519 signing of small JSON records (chain heads, run certificates): a leaf any layer uses.

A private key lives in one file, created 0600 and never sent anywhere; its public half
(PEM) is what the other side keeps to check signatures.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from flip.private_files import write_private


def load_or_create_key(path: Path) -> Ed25519PrivateKey:
    """The private key kept at `path`, made there (0600, folder 0700 if new) on first use."""
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} does not hold an Ed25519 private key")
        return key
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(pem)
    return key


def retired_path(path: Path) -> Path:
    """Where the public halves of the keys `path` held before are kept (PEM, oldest first)."""
    return path.with_name(path.name + ".retired.pub")


def rotate_key(path: Path) -> Ed25519PrivateKey:
    """Replace the key at `path` with a new one; the old one's public half is kept in
    `retired_path(path)`, so what it signed can still be checked. The new key."""
    if not path.exists():
        raise FileNotFoundError(f"no signing key at {path}")
    old = load_or_create_key(path)
    retired = retired_path(path)
    kept = retired.read_text(encoding="ascii") if retired.exists() else ""
    write_private(retired, (kept + public_pem(old)).encode("ascii"))
    fresh = Ed25519PrivateKey.generate()
    staged = path.with_name(path.name + ".new")
    staged.unlink(missing_ok=True)
    write_private(
        staged,
        fresh.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    staged.replace(path)
    return fresh


def retired_keys(path: Path) -> list[str]:
    """The public keys (PEM) `path` held before its rotations, oldest first."""
    retired = retired_path(path)
    if not retired.exists():
        return []
    end = "-----END PUBLIC KEY-----"
    text = retired.read_text(encoding="ascii")
    return [part.strip() + "\n" + end + "\n" for part in text.split(end) if part.strip()]


def public_pem(key: Ed25519PrivateKey) -> str:
    """The public half of `key` as PEM text."""
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )


def load_public(pem: str) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM text; ValueError if it is not one."""
    try:
        key = serialization.load_pem_public_key(pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise ValueError(f"not a PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


def canonical(record: dict[str, object]) -> bytes:
    """The bytes a record is signed as: JSON with sorted keys."""
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS)


def sign(key: Ed25519PrivateKey, record: dict[str, object]) -> str:
    """The signature (base64) of `record` by `key`."""
    return base64.b64encode(key.sign(canonical(record))).decode("ascii")


def verifies(public: Ed25519PublicKey | str, record: dict[str, object], signature: str) -> bool:
    """Whether `signature` is the signature of `record` by the private half of `public`."""
    try:
        key = load_public(public) if isinstance(public, str) else public
        key.verify(base64.b64decode(signature, validate=True), canonical(record))
    except (InvalidSignature, ValueError):
        return False
    return True
