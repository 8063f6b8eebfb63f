"""The site's side of anchoring the audit chains: sign the ledger's head for the hub, keep the
hub's signed heads, and check them against the hub.

The site's Ed25519 key lives beside its ledger (`signing.key`, 0600) and never leaves
the site; the hub registers its public half at enrolment. The hub's public key is kept
beside it (`hub.pub`) from the first signed head the site sees.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from flip.config import SiteConfig
from flip.data.ledger import Ledger
from flip.private_files import write_private
from flip.signing import load_or_create_key, load_public, public_pem, sign, verifies
from flip.site.hub_client import HubClient

log = logging.getLogger(__name__)

#: Who signs the hub's heads (flip.hub.anchors.HUB).
HUB = "hub"


def key_path(site: SiteConfig) -> Path:
    """Where the site's signing key lives: beside its ledger."""
    return Path(site.ledger).parent / "signing.key"


def hub_key_path(site: SiteConfig) -> Path:
    """Where the site keeps the hub's public key."""
    return Path(site.ledger).parent / "hub.pub"


def public_key(site: SiteConfig) -> str:
    """The site's public key (PEM), its key made on first use."""
    return public_pem(load_or_create_key(key_path(site)))


def head_record(signer: str, seq: int, digest: str) -> dict[str, object]:
    """What a head's signature covers (the same record as flip.hub.anchors.head_record)."""
    return {"signer": signer, "seq": int(seq), "hash": digest}


def anchor(site: SiteConfig, hub: HubClient, anchor_seq: int | None) -> dict:
    """Show the hub the ledger's signed head, with the proof for the head it kept last
    (`anchor_seq`, asked for when unknown), and keep the hub's signed head.

    Returns the hub's reply: `anchor_seq` (the seq it now keeps), `problem` (the break it
    saw in the ledger, if any) and `certify` (run certificates to countersign).
    """
    key = load_or_create_key(key_path(site))
    with Ledger(site.ledger) as ledger:
        seq, digest = ledger.head()
        body: dict[str, object] = {
            "seq": seq,
            "hash": digest,
            "signature": sign(key, head_record(site.name, seq, digest)),
            "public_key": public_pem(key),
        }
        if anchor_seq is not None:
            body["proof"] = {"seq": anchor_seq, "hash": ledger.hash_at(anchor_seq)}
        reply = hub.anchor(body)
        if not reply["recorded"] and reply["anchor_seq"] != anchor_seq:
            anchor_seq = int(reply["anchor_seq"])
            body["proof"] = {"seq": anchor_seq, "hash": ledger.hash_at(anchor_seq)}
            reply = hub.anchor(body)
        _keep_hub_head(site, ledger, reply)
    if reply.get("problem"):
        log.error("%s: the hub saw a break in this site's ledger: %s", site.name, reply["problem"])
    return reply


def _keep_hub_head(site: SiteConfig, ledger: Ledger, reply: dict) -> None:
    """Keep the hub's head if the hub's key (kept from the first reply) signed it."""
    path = hub_key_path(site)
    if not path.exists():
        write_private(path, reply["hub_key"].encode("ascii"))
    head = reply["hub_head"]
    if verifies(
        path.read_text(encoding="ascii"),
        head_record(HUB, head["seq"], head["hash"]),
        head["signature"],
    ):
        ledger.record_hub_head(head["seq"], head["hash"], head["signature"])
    else:
        log.error("%s: the hub's head is not signed by the hub key this site keeps", site.name)


def trust_hub_key(site: SiteConfig, pem: str) -> str:
    """Trust `pem` as the hub's key from now on (after the hub rotated its key: check the key
    with the hub's operator first), audited in the ledger; the key's SHA-256."""
    pem = pem.strip() + "\n"
    load_public(pem)
    digest = hashlib.sha256(pem.encode("ascii")).hexdigest()
    path = hub_key_path(site)
    previous = path.read_text(encoding="ascii") if path.exists() else ""
    with Ledger(site.ledger) as ledger:
        before = hashlib.sha256(previous.encode("ascii")).hexdigest() if previous else None
        ledger.record("hub.key.trust", {"key_sha256": digest, "replaces": before})
        write_private(path, pem.encode("ascii"))
    return digest


def verify(site: SiteConfig, hub: HubClient | None) -> list[str]:
    """Every problem found: the ledger's chain, its approvals, and (with `hub`) whether the hub's
    audit still holds the signed heads this site kept. Empty when all holds."""
    problems = []
    with Ledger(site.ledger) as ledger:
        broken = ledger.verify()
        if broken is not None:
            problems.append(f"site ledger: entry {broken} does not match its hash chain")
        problems += [f"site ledger: {p}" for p in ledger.approval_problems()]
        heads = ledger.hub_heads()
    if hub is not None and heads:
        keep = [{k: h[k] for k in ("seq", "hash", "signature")} for h in heads]
        problems += hub.check_hub_heads(keep)
    return list(dict.fromkeys(problems))
