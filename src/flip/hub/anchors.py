"""Anchoring the audit chains across the two sides: signed heads, kept by the side that did not
make them.

The hub signs the head of its audit chain with its key and shows it to each site's
agent, which keeps it; the agent signs the head of its site's ledger with the site's
key and shows it to the hub, which keeps it here. A later head must extend the one
kept (the agent proves it by sending its ledger's hash at the kept head's seq), so a
truncated or recomputed ledger is seen by the hub, and a truncated or recomputed hub
log by any site holding one of its heads (`check_hub_heads`).
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Connection, insert, select, update

from flip.hashchain import GENESIS, anchor_problem
from flip.hub import audit as hub_audit
from flip.hub import certificates
from flip.hub.auth import Principal
from flip.hub.db import audit, site_heads, sites
from flip.hub.schemas import AnchorIn, AnchorOut, SignedHead
from flip.signing import load_public, public_pem, sign, verifies

#: Who signs the hub's heads, as the signed record names it.
HUB = "hub"


class AnchorError(ValueError):
    """A head the hub cannot accept: a bad signature, or a key other than the site's."""


class NoSuchSite(LookupError):
    """No site has this id or name."""


class NoKey(ValueError):
    """The site has no signing key registered."""


def clear_site_key(conn: Connection, site: int | str, actor: str) -> str:
    """Forget the signing key registered for a site (by id or name), audited; the site's name.

    The site's next signed head registers the key it then holds (a site that lost its
    `signing.key`); the heads kept so far stay, so its new head must still extend them.
    """
    column = sites.c.id if isinstance(site, int) else sites.c.name
    row = conn.execute(select(sites.c.id, sites.c.name, sites.c.signing_key).where(column == site))
    found = row.first()
    if found is None:
        raise NoSuchSite(f"no site {site}")
    if found.signing_key is None:
        raise NoKey(f"site {found.name} has no signing key registered")
    conn.execute(update(sites).where(sites.c.id == found.id).values(signing_key=None))
    hub_audit.append(conn, actor, "site.key.clear", f"site:{found.name}")
    return str(found.name)


def hub_head(conn: Connection, key: Ed25519PrivateKey) -> SignedHead:
    """The head of the hub's audit chain, signed by the hub's key."""
    last = conn.execute(select(audit.c.seq, audit.c.hash).order_by(audit.c.seq.desc()).limit(1))
    seq, digest = last.first() or (0, GENESIS)
    return SignedHead(seq=seq, hash=digest, signature=sign(key, head_record(HUB, seq, digest)))


def head_record(signer: str, seq: int, digest: str) -> dict[str, object]:
    """What a head's signature covers: who signs, and the chain's newest (seq, hash)."""
    return {"signer": signer, "seq": int(seq), "hash": digest}


def record_site_head(
    conn: Connection, site: Principal, body: AnchorIn, key: Ed25519PrivateKey
) -> AnchorOut:
    """Keep a site's signed ledger head if it extends the last one kept; audit a break.

    A head is kept only with the proof for the last one kept (the ledger's hash at
    its seq); without it the reply asks for that seq. A break is audited once, and
    the new head is kept as the next anchor.
    """
    registered = conn.execute(select(sites.c.signing_key).where(sites.c.id == site.id)).scalar()
    if registered is None:
        if body.public_key is None:
            raise AnchorError("this site has no signing key yet: send its public key")
        registered = body.public_key.strip()
        try:
            load_public(registered)
        except ValueError as exc:
            raise AnchorError(f"public_key: {exc}") from None
        conn.execute(update(sites).where(sites.c.id == site.id).values(signing_key=registered))
        hub_audit.append(conn, site.label, "site.key.register", f"site:{site.name}")
    elif body.public_key is not None and body.public_key.strip() != registered:
        raise AnchorError("a signing key is registered for this site already, and not this one")
    if not verifies(registered, head_record(site.name, body.seq, body.hash), body.signature):
        raise AnchorError("the head's signature does not verify with this site's key")
    last = conn.execute(
        select(site_heads.c.seq, site_heads.c.hash)
        .where(site_heads.c.site_id == site.id)
        .order_by(site_heads.c.id.desc())
        .limit(1)
    ).first()
    reply = {
        "hub_head": hub_head(conn, key),
        "hub_key": public_pem(key),
        "certify": certificates.pending(conn, site.id, site.name),
    }
    if last is not None and (body.proof is None or body.proof.seq != last.seq):
        return AnchorOut(recorded=False, anchor_seq=last.seq, **reply)
    problem = None
    if last is not None:
        chain = {body.seq: body.hash}
        if body.proof.hash is not None:
            chain[body.proof.seq] = body.proof.hash
        problem = anchor_problem(chain, last.seq, last.hash)
        if problem is None and (body.seq, body.hash) == (last.seq, last.hash):
            return AnchorOut(recorded=False, anchor_seq=last.seq, **reply)
    conn.execute(
        insert(site_heads).values(
            site_id=site.id,
            seq=body.seq,
            hash=body.hash,
            signature=body.signature,
            problem=problem,
        )
    )
    if problem is not None:
        hub_audit.append(
            conn, site.label, "site.ledger.break", f"site:{site.name}", {"problem": problem}
        )
    return AnchorOut(recorded=True, anchor_seq=body.seq, problem=problem, **reply)


def check_hub_heads(
    conn: Connection,
    heads: list[SignedHead],
    key: Ed25519PrivateKey,
    retired: list[str] | None = None,
) -> list[str]:
    """Why the hub's audit chain no longer holds each of `heads` it signed (with its key, or
    one it had before a rotation: `retired`), if it does not."""
    chain = dict(conn.execute(select(audit.c.seq, audit.c.hash)).all())
    keys = [public_pem(key), *(retired or [])]
    problems = []
    for head in heads:
        record = head_record(HUB, head.seq, head.hash)
        if not any(verifies(k, record, head.signature) for k in keys):
            problems.append(f"head {head.seq}: not signed by this hub's key")
        elif problem := anchor_problem(chain, head.seq, head.hash):
            problems.append(f"hub audit {problem}")
    return problems


def ledger_breaks(conn: Connection) -> list[dict[str, object]]:
    """Every break the hub has seen in a site's ledger: the site, the head's seq, what broke."""
    found = conn.execute(
        select(sites.c.name, site_heads.c.seq, site_heads.c.problem)
        .join(sites, sites.c.id == site_heads.c.site_id)
        .where(site_heads.c.problem.is_not(None))
        .order_by(site_heads.c.id)
    )
    return [{"site": r.name, "seq": r.seq, "problem": r.problem} for r in found]
