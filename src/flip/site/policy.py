"""The site's policy applied to what the hub asks: which projects, tables, tasks and budgets.

Each check returns the reason for refusing, or None; the agent and the ClientApp
both use them, so a run that bypasses the hub meets the same rules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flip.config import SitePolicy
from flip.fl.tasks.base import TaskSpec

if TYPE_CHECKING:  # the cohort package loads the CDM schema: off the ClientApp's start path
    from flip.data.cohort import CohortDefinition
    from flip.data.cohort.circe import CirceDefinition
    from flip.data.features.store_analysis import AnalysisSpec

#: The CDM table each tabular feature source reads.
FEATURE_TABLES = {
    "age": "person",
    "male": "person",
    "condition": "condition_occurrence",
    "observation": "observation",
    "measurement": "measurement",
}


def project_problem(policy: SitePolicy, project_id: int | str) -> str | None:
    """Why the site does not work for this project, or None."""
    if policy.allowed_projects is not None and int(project_id) not in policy.allowed_projects:
        return f"project {project_id} is not among the projects this site's policy allows"
    return None


def _tables_problem(policy: SitePolicy, tables: set[str]) -> str | None:
    if policy.allowed_tables is None:
        return None
    refused = sorted(tables - set(policy.allowed_tables) - {"person"})
    if refused:
        return f"it reads {', '.join(refused)}, which this site's policy does not allow"
    return None


def query_problem(
    policy: SitePolicy, project_id: int, definition: CohortDefinition | CirceDefinition
) -> str | None:
    """Why the site will not count this cohort for this project, or None."""
    tables = definition.tables()
    tables |= {"note"} if "note_nlp" in tables else set()
    return project_problem(policy, project_id) or _tables_problem(policy, tables)


def task_tables(spec: TaskSpec | AnalysisSpec) -> set[str]:
    """The CDM tables a task (or an analysis) reads: its entry event's and outcome's, its
    features', its notes' and its images', and an analysis's Circe cohort's."""
    tables = {"person", "measurement", "condition_occurrence"}
    cohort = getattr(spec, "cohort", None)
    tables |= cohort.tables() if cohort is not None else set()
    tables |= {FEATURE_TABLES[f.source] for f in spec.data.features}
    tables |= {"note"} if spec.data.text is not None else set()
    tables |= {"observation_period", "death"} if spec.data.outcome == "time-to-event" else set()
    return tables | ({"image_occurrence"} if spec.data.image is not None else set())


def analysis_kind(kind: str) -> str:
    """The name auto-approve rules give an analysis kind: `analysis:table1`, say."""
    return f"analysis:{kind}"


def analysis_problem(policy: SitePolicy, project_id: int, spec: AnalysisSpec) -> str | None:
    """Why the site's policy refuses this analysis for this project, or None."""
    if problem := analysis_kind_problem(policy, project_id, spec.kind):
        return problem
    if problem := _tables_problem(policy, task_tables(spec)):
        return f"the analysis {problem.removeprefix('it ')}"
    if spec.kind == "survival" and spec.time_bin < policy.min_time_bin:
        return (
            f"a time bin of {spec.time_bin:g} days is finer than this site's policy allows "
            f"(min_time_bin {policy.min_time_bin:g}): a bin's end would tell one person's follow-up"
        )
    return None


def analysis_kind_problem(policy: SitePolicy, project_id: int, kind: str) -> str | None:
    """Why the site's policy refuses any analysis of this kind for this project, or None."""
    if problem := project_problem(policy, project_id):
        return problem
    if policy.allowed_analysis_kinds is not None and kind not in policy.allowed_analysis_kinds:
        return f"analysis kind {kind} is not allowed by site policy"
    return None


def auto_approves_analysis(policy: SitePolicy, project_id: int, kind: str) -> bool:
    """Whether a rule of the policy approves an analysis of this kind without the admin."""
    return any(
        analysis_kind(kind) in rule.kinds and (rule.projects is None or project_id in rule.projects)
        for rule in policy.auto_approve
    )


def task_problem(policy: SitePolicy, project_id: int | str, spec: TaskSpec) -> str | None:
    """Why the site's policy refuses this task for this project, or None."""
    if problem := project_problem(policy, project_id):
        return problem
    if spec.kind not in policy.allowed_task_kinds:
        return f"task kind {spec.kind} is not allowed by site policy"
    if policy.max_rounds is not None and (spec.rounds is None or spec.rounds > policy.max_rounds):
        return (
            f"site policy allows at most {policy.max_rounds} rounds; the task names {spec.rounds}"
        )
    if problem := _tables_problem(policy, task_tables(spec)):
        return f"the task {problem.removeprefix('it ')}"
    if spec.privacy is not None and spec.privacy.delta > policy.max_delta:
        return (
            f"the task's delta {spec.privacy.delta:g} is above the site's max_delta "
            f"{policy.max_delta:g}"
        )
    if policy.max_epsilon is not None:
        return privacy_problem(spec, policy.max_epsilon)
    return None


def privacy_problem(spec: TaskSpec, max_epsilon: float) -> str | None:
    """Why the task's differential privacy does not meet the site's ceiling, or None.

    This is the task alone; the ClientApp charges every round to the site's budget across
    runs, and checks record-level DP-SGD (whose epsilon depends on the site's rows) there.
    """
    if spec.privacy is None or spec.rounds is None:
        return f"site policy requires differential privacy with epsilon <= {max_epsilon}"
    if spec.privacy.level == "record":
        return None
    try:
        epsilon = spec.privacy.epsilon(spec.rounds)
    except (ArithmeticError, ValueError) as exc:
        return f"the task's epsilon cannot be computed ({type(exc).__name__}: {exc})"
    if epsilon > max_epsilon:
        return f"the task spends epsilon {epsilon:.2f}, above the site's ceiling {max_epsilon}"
    return None


def rows_problem(policy: SitePolicy, split: str, n: int) -> str | None:
    """Why the site will not use a task's `split` ("training" or "test") of `n` rows, or None:
    fewer rows than the policy's minimum, whatever the task's test fraction asks. The reason
    reaches the hub, so it names the minimum, never `n`."""
    fewest = policy.fewest_rows()
    if n < fewest:
        return f"the {split} split has fewer than the site's minimum of {fewest} rows"
    return None


def auto_approves(policy: SitePolicy, project_id: int, spec: TaskSpec) -> bool:
    """Whether a rule of the policy approves this (policy-abiding) task without the admin."""
    for rule in policy.auto_approve:
        if spec.kind not in rule.kinds:
            continue
        if rule.projects is not None and project_id not in rule.projects:
            continue
        if rule.max_rounds is not None and (spec.rounds is None or spec.rounds > rule.max_rounds):
            continue
        return True
    return False
