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
