"""Run certificates: a run's facts, signed by the hub and countersigned by each site, that anyone
checks offline (`flip verify CERT`).

A certificate is `{"fields": ..., "digests": ..., "signatures": {"hub": ..., "sites": ...}}`.
Each field (the task hash, the cohort definition's hash, the privacy parameters and the
epsilon spent, the final model's hash, and a `site:NAME` field per site with its data
fingerprint, row counts, approval and public key) has a SHA-256 digest; the signatures
cover the digests, so a tampered field is named, and a tampered digest breaks them.
"""

from __future__ import annotations

import hashlib

from flip.signing import canonical, verifies

#: Who signs first: the hub (its public key is the field `hub_key`).
HUB = "hub"
#: The prefix of each site's field.
SITE = "site:"
#: The fields every certificate has, besides one `site:NAME` per site.
REQUIRED = ("run", "task_hash", "cohort_hash", "privacy", "epsilon", "model_sha256", "hub_key")


def digests(fields: dict[str, object]) -> dict[str, str]:
    """The SHA-256 of each field's canonical JSON."""
    return {
        name: hashlib.sha256(canonical({"v": value})).hexdigest() for name, value in fields.items()
    }


def signed_record(signer: str, field_digests: dict[str, str]) -> dict[str, object]:
    """What a signer's signature covers: who signs, and every field's digest."""
    return {"signer": signer, "certificate": field_digests}


def site_names(fields: dict[str, object]) -> list[str]:
    """The sites a certificate names."""
    return sorted(name.removeprefix(SITE) for name in fields if name.startswith(SITE))


def problems(
    document: dict, hub_key: str | None = None, site_keys: dict[str, str] | None = None
) -> list[str]:
    """Why `document` is not a valid certificate (empty: it is).

    `hub_key` and `site_keys` are trusted public keys (PEM): when given, the keys the
    certificate carries must be these; otherwise the certificate's own keys are used.
    """
    site_keys = site_keys or {}
    try:
        fields, stated = dict(document["fields"]), dict(document["digests"])
        signatures = dict(document["signatures"])
        site_signatures = dict(signatures.get("sites") or {})
    except (KeyError, TypeError, ValueError) as exc:
        return [f"not a run certificate: {exc}"]
    found = [f"field {name!r} is missing" for name in REQUIRED if name not in fields]
    run = fields.get("run")
    if "run" in fields and not (isinstance(run, dict) and isinstance(run.get("id"), int)):
        found.append("field 'run' names no run id")
    if not site_names(fields):
        found.append("the certificate names no site")
    actual = digests(fields)
    for name in sorted(actual.keys() | stated.keys()):
        if actual.get(name) != stated.get(name):
            found.append(f"field {name!r} does not match its signed digest (tampered)")
    carried = str(fields.get("hub_key") or "")
    if hub_key is not None and carried.strip() != hub_key.strip():
        found.append("field 'hub_key' is not the trusted hub key")
    key = hub_key or carried
    if not verifies(key, signed_record(HUB, stated), str(signatures.get("hub") or "")):
        found.append("the hub's signature does not verify over the certificate's digests")
    for site in site_names(fields):
        own = fields[SITE + site]
        carried = str(own.get("public_key") or "") if isinstance(own, dict) else ""
        trusted = site_keys.get(site)
        if trusted is not None and carried.strip() != trusted.strip():
            found.append(f"field 'site:{site}' carries a key other than {site}'s trusted key")
        signature = site_signatures.get(site)
        if signature is None:
            found.append(f"site {site} has not countersigned")
        elif not verifies(trusted or carried, signed_record(site, stated), str(signature)):
            found.append(f"site {site}'s countersignature does not verify")
    for site in sorted(set(site_keys) - set(site_names(fields))):
        found.append(f"site {site} is not in the certificate")
    return found
