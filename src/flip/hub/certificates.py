"""Issuing run certificates at the hub, and collecting the sites' countersignatures.

When a run completes the hub writes its certificate (flip.certificate) from what it
holds: the task and its cohort definition, each joined site's data fingerprint and
row counts as its ClientApp reported them, each site's decision, the privacy
parameters with the epsilon spent, and the final model's hash; it signs the digests.
Each site's agent is handed the certificates it has yet to countersign, checks its
own part against its ledger, and countersigns.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Connection, insert, select

from flip.certificate import HUB, SITE, digests, signed_record
from flip.fl.privacy import PrivacySpec
from flip.hub.db import (
    certificate_signatures,
    run_certificates,
    run_sites,
    runs,
    sites,
    task_decisions,
    tasks,
)
from flip.signing import canonical, public_pem, sign, verifies


def issue(conn: Connection, run_id: int, results: dict, key: Ed25519PrivateKey) -> None:
    """Write and sign the certificate of completed run `run_id` (its `results` as recorded)."""
    run = conn.execute(
        select(runs, tasks.c.hash, tasks.c.spec, tasks.c.id.label("task"))
        .join(tasks, tasks.c.id == runs.c.task_id)
        .where(runs.c.id == run_id)
    ).one()
    spec = orjson.loads(run.spec)
    privacy = spec.get("privacy")
    epsilon = None if privacy is None else _epsilon(PrivacySpec(**privacy), run.rounds)
    fields: dict[str, object] = {
        "run": {
            "id": run_id,
            "project": run.project_id,
            "rounds": run.rounds,
            "strategy": run.strategy,
            "runtime": run.runtime,
        },
        "task_hash": run.hash,
        "cohort_hash": hashlib.sha256(canonical(spec["data"])).hexdigest(),
        "privacy": privacy,
        "epsilon": None if epsilon is None else round(epsilon, 6),
        "model_sha256": results.get("model_sha256"),
        "hub_key": public_pem(key),
        "issued_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    per_site = results.get("per_site") or {}
    joined = conn.execute(
        select(sites.c.name, sites.c.signing_key, task_decisions.c.decision)
        .join(run_sites, run_sites.c.site_id == sites.c.id)
        .outerjoin(
            task_decisions,
            (task_decisions.c.site_id == sites.c.id) & (task_decisions.c.task_id == run.task),
        )
        .where(run_sites.c.run_id == run_id, run_sites.c.status == "joined")
    )
    for site in joined:
        reported = per_site.get(site.name, {})
        fields[SITE + site.name] = {
            "data_sha256": reported.get("data_sha256"),
            "n_train": reported.get("n_train"),
            "n_test": reported.get("n_test"),
            "approval": site.decision,
            "public_key": site.signing_key,
        }
    signature = sign(key, signed_record(HUB, digests(fields)))
    conn.execute(
        insert(run_certificates).values(
            run_id=run_id, fields=orjson.dumps(fields).decode(), hub_signature=signature
        )
    )


def _epsilon(privacy: PrivacySpec, rounds: int) -> float | None:
    """The epsilon spent, or None where the accountant cannot compute one (a run must end)."""
    try:
        return privacy.epsilon(rounds)
    except (ArithmeticError, ValueError):
        return None


def document(conn: Connection, run_id: int) -> dict | None:
    """The certificate of run `run_id` with every countersignature so far; None if none."""
    row = conn.execute(select(run_certificates).where(run_certificates.c.run_id == run_id)).first()
    if row is None:
        return None
    fields = orjson.loads(row.fields)
    signed = conn.execute(
        select(sites.c.name, certificate_signatures.c.signature)
        .join(sites, sites.c.id == certificate_signatures.c.site_id)
        .where(certificate_signatures.c.run_id == run_id)
    )
    return {
        "fields": fields,
        "digests": digests(fields),
        "signatures": {"hub": row.hub_signature, "sites": dict(signed.all())},
    }


def pending(conn: Connection, site_id: int, site_name: str) -> list[dict]:
    """The certificates naming this site that it has not countersigned yet."""
    signed = select(certificate_signatures.c.run_id).where(
        certificate_signatures.c.site_id == site_id
    )
    rows = conn.execute(
        select(run_certificates.c.run_id, run_certificates.c.fields)
        .join(run_sites, run_sites.c.run_id == run_certificates.c.run_id)
        .where(
            run_sites.c.site_id == site_id,
            run_sites.c.status == "joined",
            run_certificates.c.run_id.not_in(signed),
        )
    )
    found = []
    for run_id, text in rows:
        fields = orjson.loads(text)
        if SITE + site_name in fields:
            found.append({"run": run_id, "fields": fields, "digests": digests(fields)})
    return found


def countersign(
    conn: Connection, site_id: int, site_name: str, run_id: int, signature: str
) -> str | None:
    """Keep a site's countersignature of run `run_id`'s certificate; why not, if it is refused."""
    text = conn.execute(
        select(run_certificates.c.fields).where(run_certificates.c.run_id == run_id)
    ).scalar()
    key = conn.execute(select(sites.c.signing_key).where(sites.c.id == site_id)).scalar()
    if text is None or SITE + site_name not in orjson.loads(text):
        return f"run {run_id} has no certificate naming {site_name}"
    if key is None or not verifies(
        key, signed_record(site_name, digests(orjson.loads(text))), signature
    ):
        return "the countersignature does not verify with this site's key"
    done = conn.execute(
        select(certificate_signatures.c.run_id).where(
            certificate_signatures.c.run_id == run_id, certificate_signatures.c.site_id == site_id
        )
    ).first()
    if done is None:
        conn.execute(
            insert(certificate_signatures).values(
                run_id=run_id, site_id=site_id, signature=signature
            )
        )
    return None
