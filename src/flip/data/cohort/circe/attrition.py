"""A site's attrition for a Circe cohort: persons after the primary criteria and after each
inclusion rule, less the site's opt-outs, released through the site's differencing guard
like any other count."""

from __future__ import annotations

from flip.data.cdm.store import Store
from flip.data.cohort.circe.definition import CirceDefinition
from flip.data.cohort.circe.run import run_circe
from flip.data.cohort.guard import ReleaseGuard
from flip.data.cohort.optout import opted_out
from flip.data.cohort.release import Refused, released_steps
from flip.data.cohort.sql import population


def attrition_steps(store: Store, definition: CirceDefinition) -> list[frozenset[int]]:
    """Persons per step (they stay at the site): primary criteria, then each rule."""
    with store.connect() as conn:
        excluded = opted_out(conn)
    return [step - excluded for step in run_circe(store, definition.expression).steps]


def attrition_counts(store: Store, definition: CirceDefinition) -> list[int]:
    """Unsuppressed counts per step (they stay at the site): primary criteria, then each rule."""
    return [len(step) for step in attrition_steps(store, definition)]


def step_names(definition: CirceDefinition) -> list[str]:
    """The steps' names: the primary criteria's, then each inclusion rule's."""
    return ["primary criteria", *definition.rule_names()]


def site_attrition(
    store: Store, definition: CirceDefinition, min_cell: int, guard: ReleaseGuard | None = None
) -> list[int | str]:
    """The site's attrition as it releases it (`release_steps`); with a guard, the site's
    persons are audited as a count the project may know."""
    if guard is not None:
        everyone = population(store)
        if problem := guard.audit_problem(len(everyone)):
            raise Refused(problem)
        guard.also_known(everyone)
    return release_steps(attrition_steps(store, definition), min_cell, guard)


def release_steps(
    steps: list[frozenset[int]], min_cell: int, guard: ReleaseGuard | None = None
) -> list[int | str]:
    """Each step's count as released (`flip.data.cohort.release.released_steps`), the
    project's budget checked and what was released remembered. Without a guard, the steps
    are checked against each other only."""
    if guard is not None and (problem := guard.budget_problem() or guard.audit_problem()):
        raise Refused(problem)
    released, shown = released_steps(steps, min_cell, guard)
    if guard is not None:
        guard.remember(shown)
    return released
