"""A site admin's decisions on tasks: recorded in the site's ledger first, then told to the hub."""

from __future__ import annotations

from flip.config import SiteConfig
from flip.data.ledger import Ledger
from flip.site.hub_client import HubClient

#: Who the ledger names for decisions no person made: the agent declining what the
#: policy forbids, and a policy rule approving.
AGENT = "agent"
RULE = "policy:auto_approve"


def by_person(by: str) -> bool:
    """Whether a decision recorded as made `by` this name was a person's, not a rule's."""
    return by != AGENT and not by.startswith("policy:")


def decide(
    site: SiteConfig,
    hub: HubClient | None,
    project_id: int,
    task_hash: str,
    decision: str,
    *,
    by: str,
    reason: str = "",
) -> None:
    """Approve or decline exactly `task_hash` for a project; the ledger is the source of truth."""
    ledger = Ledger(site.ledger)
    try:
        ledger.decide(str(project_id), task_hash, decision, by, reason)
    finally:
        ledger.close()
    if hub is not None:
        hub.decide(project_id, task_hash, decision, reason)
