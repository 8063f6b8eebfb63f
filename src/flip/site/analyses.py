"""The agent's part in federated analyses: check the spec, its hash and the policy, run only
what the site's ledger approved (or an auto-approve rule covers), release the aggregates.

A site admin approves an analysis as a task, by its exact hash (`flip site approve PROJECT
HASH --analysis`); an auto-approve rule covers a kind by naming `analysis:KIND`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import create_engine

from flip.config import SiteConfig, SitePolicy
from flip.data.cdm.store import open_store
from flip.data.cohort.guard import ReleaseGuard
from flip.data.features.harmonisation import HarmonisationSpec, harmonisation_release
from flip.data.features.store_analysis import (
    AnalysisSpec,
    Declined,
    extract,
    released_sets,
    site_release,
)
from flip.data.features.tabular import TabularData
from flip.data.ledger import Ledger, LedgerTampered
from flip.problems import first_problem
from flip.site.approvals import RULE, by_person
from flip.site.hub_client import HubClient
from flip.site.policy import (
    analysis_kind_problem,
    analysis_problem,
    auto_approves_analysis,
)
from flip.stats.suppression import is_small

log = logging.getLogger(__name__)

#: Rounds a site answers of one approved analysis (its hash), under whichever analysis ids the
#: hub sends it: Newton converges in well under this many (step halvings included), and each
#: round releases another gradient at a point the hub chose.
MAX_ROUNDS = 100

#: Seconds a running analysis's cohort is kept after the hub last asked about it.
COHORT_TTL = 600.0


def load_spec(body: dict[str, Any]) -> AnalysisSpec | HarmonisationSpec:
    """The analysis a spec describes (ValidationError if it describes none)."""
    if body.get("kind") == "harmonisation":
        return HarmonisationSpec.model_validate(body)
    return AnalysisSpec.model_validate(body)


class AnalysisItem(BaseModel):
    """One round of an analysis as the hub asks for it."""

    id: int
    project_id: int
    hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    spec: dict[str, Any]
    round: int = Field(ge=0)
    proposal: list[Any] | None = None


class Analyses:
    """One site's handling of the analyses the hub asks it for."""

    def __init__(self, site: SiteConfig, hub: HubClient) -> None:
        self.site = site
        self.hub = hub
        self.waiting: set[tuple[int, str]] = set()
        #: Each running analysis's cohort, read once: every Newton round sees the same rows.
        self.cohorts: dict[int, TabularData] = {}
        self.seen: dict[int, float] = {}

    def handle(self, item: dict[str, Any]) -> None:
        """Release this round of the analysis if approved; refuse what the site never runs;
        leave the rest waiting for the site admin."""
        try:
            AnalysisItem.model_validate(item)
        except ValidationError as exc:
            self.refuse(item, f"malformed analysis item: {first_problem(exc)}")
            return
        project, digest = int(item["project_id"]), str(item["hash"])
        try:
            spec = load_spec(item["spec"])
        except ValidationError as exc:
            self.refuse(item, f"invalid analysis spec: {first_problem(exc)}")
            return
        if spec.digest() != digest or spec.body() != item["spec"]:
            self.refuse(item, "the analysis's spec does not hash to its claimed hash")
            return
        if problem := policy_problem(self.site.policy, project, spec):
            self.refuse(item, problem)
            return
        if not self._approved(project, digest, spec.kind, item):
            return
        if int(item["round"]) > 0 and not self._started(project, digest):
            self.refuse(item, "this site never released round 0 of this analysis to this project")
            return
        self._release(item, spec)

    def _started(self, project: int, digest: str) -> bool:
        """Whether this site released round 0 of the analysis `digest` to `project` (its
        Newton rounds answer only an analysis whose first round passed the guard)."""
        with Ledger(self.site.ledger) as ledger:
            try:
                released = ledger.chained(frozenset({"analysis.released"}))
            except LedgerTampered:
                return False
        return any(
            (str(d.get("project")), d.get("hash"), d.get("round")) == (str(project), digest, 0)
            for _, d in released
        )

    def _approved(self, project: int, digest: str, kind: str, item: dict[str, Any]) -> bool:
        with Ledger(self.site.ledger) as ledger:
            recorded = ledger.decision(str(project), digest)
            if recorded and recorded["decision"] == "declined":
                self.refuse(item, recorded["reason"] or "the site declined this analysis")
                return False
            try:
                approved = ledger.is_approved(str(project), digest)
            except LedgerTampered as exc:
                self.refuse(item, str(exc))
                return False
            person = recorded is not None and by_person(recorded["decided_by"])
            if (
                not approved
                and not person
                and auto_approves_analysis(self.site.policy, project, kind)
            ):
                ledger.decide(str(project), digest, "approved", RULE)
                approved = True
            if not approved and (project, digest) not in self.waiting:
                self.waiting.add((project, digest))
                ledger.record(
                    "analysis.waiting",
                    {"analysis": item["id"], "project": project, "hash": digest, "kind": kind},
                )
                log.info(
                    "%s: analysis %s (%s) waits for approval of %s",
                    self.site.name,
                    item["id"],
                    kind,
                    digest,
                )
        return approved

    def forget(self, open_ids: set[int]) -> None:
        """Drop the cohorts kept for analyses the hub has not asked about for COHORT_TTL s
        (between two rounds an analysis waits for the other sites)."""
        now = time.monotonic()
        for analysis_id in open_ids & set(self.cohorts):
            self.seen[analysis_id] = now
        for analysis_id, seen in list(self.seen.items()):
            if now - seen > COHORT_TTL:
                self.cohorts.pop(analysis_id, None)
                del self.seen[analysis_id]

    def _release(self, item: dict[str, Any], spec: AnalysisSpec | HarmonisationSpec) -> None:
        min_cell = self.site.policy.min_cell_size
        if isinstance(spec, HarmonisationSpec) or item["id"] not in self.cohorts:
            store = open_store(self.site.store, read_only=True)
            try:
                if isinstance(spec, HarmonisationSpec):
                    released = harmonisation_release(store, spec, min_cell)
                else:
                    self.cohorts[item["id"]] = extract(store, spec)
                    self.seen[item["id"]] = time.monotonic()
            finally:
                store.close()
        if isinstance(spec, AnalysisSpec):
            cohort = self.cohorts[item["id"]]
            try:
                self._guard(item, released_sets(cohort, spec, self.site.policy.min_cell_size))
                released = site_release(cohort, spec, item["round"], item["proposal"], min_cell)
            except Declined as exc:
                self.refuse(item, str(exc))
                return
        with Ledger(self.site.ledger) as ledger:
            answered = ledger.count_round(
                f"analysis:{item['id']}",
                str(item["project_id"]),
                item["hash"],
                MAX_ROUNDS,
                kind="analysis",
                across_runs=True,
            )
            if answered is None:
                reason = f"this site answers at most {MAX_ROUNDS} rounds of an analysis"
                ledger.record(
                    "analysis.refused",
                    {"analysis": item["id"], "project": item["project_id"], "reason": reason},
                )
            else:
                ledger.record(
                    "analysis.released",
                    {
                        "analysis": item["id"],
                        "project": item["project_id"],
                        "hash": item["hash"],
                        "round": item["round"],
                    },
                )
        if answered is None:
            self.hub.release_analysis(item["id"], int(item["round"]), None, refused=reason)
            return
        self.hub.release_analysis(item["id"], item["round"], released)

    def _guard(self, item: dict[str, Any], sets: list[frozenset[int]]) -> None:
        """Declined when a set of persons any round of the analysis counts or sums over
        differs by 1 to min_cell-1 persons from one whose count (or sums) this project was
        given before (a query's cohort, a task's split, another analysis): subtracting the
        two would tell those persons' values. Else the sets whose counts it shows (`_shown`)
        are kept for the next check."""
        min_cell = self.site.policy.min_cell_size
        with Ledger(self.site.ledger) as ledger:
            guard = ReleaseGuard(
                ledger.engine,
                str(item["project_id"]),
                f"analysis {item['hash']}",
                min_cell,
                None,
                self.site.policy.max_audit_cells,
            )
            shown = _shown(sets, min_cell)
            fresh = [s for s in shown if not guard.released_before(s)]
            if fresh and (problem := guard.audit_problem()):
                raise Declined(problem)
            if any(guard.isolates(s) for s in fresh):
                if guard.undecided is not None:
                    raise Declined(f"its cohort cannot be checked: {guard.undecided}")
                raise Declined(
                    f"its cohort differs by 1 to {min_cell - 1} persons from one whose count or "
                    "sums this project was given before: the difference would tell theirs"
                )
            if fresh:
                guard.remember(fresh, counted=False)

    def refuse(self, item: Any, reason: str) -> None:
        """Audit the refusal and tell the hub why, releasing nothing (an item without an
        analysis id and round to answer is only audited)."""
        known = item if isinstance(item, dict) else {}
        analysis, round_ = _whole(known.get("id")), _whole(known.get("round", 0))
        with Ledger(self.site.ledger) as ledger:
            ledger.record(
                "analysis.refused",
                {
                    "analysis": analysis,
                    "project": _whole(known.get("project_id")),
                    "reason": reason,
                },
            )
        if analysis is None or round_ is None or round_ < 0:
            log.error("%s: refused an analysis item it cannot answer: %s", self.site.name, reason)
            return
        self.hub.release_analysis(analysis, round_, None, refused=reason)


def _shown(sets: list[frozenset[int]], min_cell: int) -> list[frozenset[int]]:
    """The sets, in order (the cohort first), whose counts an analysis shows: not one of 1 to
    min_cell-1 persons, nor one that with those before it would single out so few (a
    column's n when only a few values are missing, a rare level's complement), which the
    analysis withholds and the site must not take as known."""
    scratch = ReleaseGuard(create_engine("sqlite://"), "", "scratch", min_cell, None)
    shown: list[frozenset[int]] = []
    for members in dict.fromkeys(sets):
        if members and not is_small(len(members), min_cell) and not scratch.isolates(members):
            scratch.hold([members])
            shown.append(members)
    return shown


def _whole(value: Any) -> int | None:
    """`value` as an int if it is one (or a string of one), else None."""
    if isinstance(value, bool):
        return None
    try:
        return int(value) if isinstance(value, int | str) else None
    except ValueError:
        return None


def policy_problem(
    policy: SitePolicy, project: int, spec: AnalysisSpec | HarmonisationSpec
) -> str | None:
    """Why the site's policy refuses this analysis for this project now, or None."""
    if isinstance(spec, HarmonisationSpec):
        return analysis_kind_problem(policy, project, spec.kind)
    return analysis_problem(policy, project, spec)
