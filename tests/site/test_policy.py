"""The site policy: projects, tables, rounds and auto-approval, for the agent and ClientApp."""

import pytest

from flip.config import AutoApproval, SiteConfig, SitePolicy
from flip.data.cohort import CohortDefinition
from flip.data.ledger import Ledger
from flip.fl.client import NotApproved, authorise
from flip.fl.server import run_config
from flip.fl.tasks import mace_task, task_hash
from flip.site.policy import auto_approves, query_problem, task_problem, task_tables

NOTE_QUERY = CohortDefinition(name="notes", include=[{"table": "note", "concept_ids": [4329847]}])


def test_queries_are_refused_outside_allowed_projects_and_tables():
    policy = SitePolicy(allowed_projects=[1, 2], allowed_tables=["condition_occurrence"])
    assert "project 3" in query_problem(policy, 3, CohortDefinition(name="all"))
    assert query_problem(policy, 1, CohortDefinition(name="all")) is None
    assert "reads note" in query_problem(policy, 1, NOTE_QUERY)
    assert query_problem(SitePolicy(), 99, NOTE_QUERY) is None


def test_an_affirmed_note_query_reads_note_nlp_and_note():
    query = CohortDefinition(name="nlp", include=[{"table": "note_nlp", "concept_ids": [140168]}])
    nlp_only = SitePolicy(allowed_tables=["note_nlp"])
    assert query_problem(nlp_only, 1, query) == (
        "it reads note, which this site's policy does not allow"
    )
    assert query_problem(SitePolicy(allowed_tables=["note", "note_nlp"]), 1, query) is None


def test_tasks_are_checked_for_kind_rounds_tables_and_project():
    spec = mace_task().model_copy(update={"rounds": 10})
    assert task_tables(spec) >= {"person", "condition_occurrence", "measurement"}
    assert task_problem(SitePolicy(), 1, spec) is None
    assert "kind" in task_problem(SitePolicy(allowed_task_kinds=["tabular-mlp"]), 1, spec)
    assert "at most 5 rounds" in task_problem(SitePolicy(max_rounds=5), 1, spec)
    narrow = SitePolicy(allowed_tables=["condition_occurrence", "observation"])
    assert "reads measurement" in task_problem(narrow, 1, spec)
    assert "project 4" in task_problem(SitePolicy(allowed_projects=[1]), 4, spec)


def test_a_task_that_reads_notes_or_images_needs_their_tables_allowed():
    from flip.fl.tasks import mace_modal_task

    spec = mace_modal_task("multimodal")
    structured = ["measurement", "condition_occurrence", "observation"]
    assert {"note", "image_occurrence"} <= task_tables(spec)
    assert not {"note", "image_occurrence"} & task_tables(mace_task())
    policy = SitePolicy(allowed_task_kinds=["multimodal"], allowed_tables=structured)
    assert "reads image_occurrence, note" in task_problem(policy, 1, spec)
    notes_only = policy.model_copy(update={"allowed_tables": [*structured, "note"]})
    assert "reads image_occurrence" in task_problem(notes_only, 1, spec)
    assert task_problem(notes_only, 1, mace_modal_task("multimodal", images=False)) is None


def test_auto_approval_rules_match_kind_project_and_rounds():
    spec = mace_task().model_copy(update={"rounds": 10})
    rule = AutoApproval(kinds=["tabular-logreg"], projects=[7], max_rounds=20)
    policy = SitePolicy(auto_approve=[rule])
    assert auto_approves(policy, 7, spec)
    assert not auto_approves(policy, 8, spec)
    assert not auto_approves(
        SitePolicy(auto_approve=[rule.model_copy(update={"max_rounds": 5})]), 7, spec
    )
    assert not auto_approves(SitePolicy(), 7, spec)


def test_the_clientapp_refuses_a_project_outside_the_policy_even_when_approved(tmp_path):
    spec = mace_task()
    site = SiteConfig(
        name="s",
        store=str(tmp_path / "none.duckdb"),
        ledger=str(tmp_path / "l.sqlite"),
        policy=SitePolicy(allowed_projects=[1]),
    )
    Ledger(tmp_path / "l.sqlite").decide("9", task_hash(spec), "approved", by="admin")
    with pytest.raises(NotApproved, match="project 9"):
        authorise(site, run_config("9", spec))
    refusals = [e for e in Ledger(tmp_path / "l.sqlite").entries() if e["action"] == "run.refused"]
    assert "project 9" in refusals[-1]["detail"]


def test_an_analysis_with_a_circe_cohort_needs_the_cohorts_tables_allowed():
    from flip.data.features.store_analysis import AnalysisSpec
    from flip.site.policy import analysis_problem

    data = mace_task().data
    visits = {"ConceptSets": [], "PrimaryCriteria": {"CriteriaList": [{"VisitOccurrence": {}}]}}
    spec = AnalysisSpec(kind="table1", data=data, cohort={"name": "v", "expression": visits})
    tables = sorted(task_tables(AnalysisSpec(kind="table1", data=data)))
    assert analysis_problem(SitePolicy(allowed_tables=tables), 1, spec) == (
        "the analysis reads observation_period, visit_occurrence, which this site's policy "
        "does not allow"
    )
    wider = [*tables, "observation_period", "visit_occurrence"]
    assert analysis_problem(SitePolicy(allowed_tables=wider), 1, spec) is None
