"""A site's attrition for a Circe cohort: persons after the primary criteria and after each
inclusion rule, less the site's opt-outs, released under its threshold."""

from __future__ import annotations

from flip.data.cdm.store import Store
from flip.data.cohort.circe.definition import CirceDefinition
from flip.data.cohort.circe.run import run_circe
from flip.data.cohort.optout import opted_out
from flip.stats.attrition import release_attrition


def attrition_counts(store: Store, definition: CirceDefinition) -> list[int]:
    """Unsuppressed counts per step (they stay at the site): primary criteria, then each rule."""
    with store.connect() as conn:
        excluded = opted_out(conn)
    return [len(step - excluded) for step in run_circe(store, definition.expression).steps]


def step_names(definition: CirceDefinition) -> list[str]:
    """The steps' names: the primary criteria's, then each inclusion rule's."""
    return ["primary criteria", *definition.rule_names()]


def site_attrition(store: Store, definition: CirceDefinition, min_cell: int) -> list[int | str]:
    """The site's attrition as it releases it (small counts and small drops hidden)."""
    return release_attrition(attrition_counts(store, definition), min_cell)
