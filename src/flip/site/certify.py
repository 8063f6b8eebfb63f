"""The site's countersignature of a run certificate: given only once its own part is what the
site's ledger records (its approval, and the data fingerprint and row counts its ClientApp
reported in that very run), and with its own key."""

from __future__ import annotations

import logging

import orjson

from flip.certificate import SITE, digests, signed_record
from flip.config import SiteConfig
from flip.data.ledger import Ledger, LedgerTampered
from flip.signing import load_or_create_key, public_pem, sign
from flip.site.anchor import key_path
from flip.site.hub_client import HubClient

log = logging.getLogger(__name__)


def countersign(site: SiteConfig, hub: HubClient, certificate: dict) -> str | None:
    """Countersign `certificate` (run, fields, digests) if the site's part holds; else audit
    and return why not."""
    fields = certificate["fields"]
    run = {"run": certificate["run"], "project": str(fields["run"]["project"])}
    run["task_hash"] = str(fields["task_hash"])
    key = load_or_create_key(key_path(site))
    with Ledger(site.ledger) as ledger:
        reason = _problem(
            site, ledger, certificate["run"], fields, certificate["digests"], public_pem(key)
        )
        if reason is not None:
            ledger.record("run.certificate.refused", {**run, "reason": reason})
            log.error("%s: not countersigning run %s: %s", site.name, run["run"], reason)
            return reason
        hub.countersign(certificate["run"], sign(key, signed_record(site.name, digests(fields))))
        ledger.record("run.certificate.signed", run)
    return None


def _problem(
    site: SiteConfig, ledger: Ledger, run_id: int, fields: dict, stated: dict, own_key: str
) -> str | None:
    """Why this site's part of run `run_id`'s certificate is not what its ledger records for
    that run (its ClientApp's last evaluation in it), or None."""
    mine = fields.get(SITE + site.name)
    if digests(fields) != stated or not isinstance(mine, dict):
        return "the certificate's digests are not its fields', or it does not name this site"
    if fields["run"].get("id") != run_id:
        return f"the certificate handed over for run {run_id} is another run's"
    project, task_hash = str(fields["run"]["project"]), str(fields["task_hash"])
    try:
        approved = ledger.is_approved(project, task_hash)
    except LedgerTampered as exc:
        return str(exc)
    if not approved or mine.get("approval") != "approved":
        return "this site's ledger does not hold its approval of the task"
    if str(mine.get("public_key") or "").strip() != own_key.strip():
        return "the certificate names another key for this site"
    evaluated = [
        orjson.loads(str(e["detail"])) for e in ledger.entries() if e["action"] == "run.evaluated"
    ]
    reported = [
        d
        for d in evaluated
        if (d.get("project"), d.get("task_hash")) == (project, task_hash)
        and str(d.get("run")) == str(run_id)
    ]
    if not reported:
        return f"this site's ledger records no evaluation of the task in run {run_id}"
    last = reported[-1]
    for name in ("data_sha256", "n_train", "n_test"):
        if mine.get(name) != last.get(name):
            return f"{name} is {mine.get(name)!r}, and this site reported {last.get(name)!r}"
    return None
