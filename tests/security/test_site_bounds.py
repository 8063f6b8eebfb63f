"""Issue 19 item 1, at the site: the limits the hub enforces hold again where the data are."""

import re

import pytest
from pydantic import ValidationError

from flip.config import SitePolicy
from flip.data.cohort import CohortDefinition
from flip.fl.privacy import PrivacySpec
from flip.fl.tasks import mace_task
from flip.fl.tasks.base import TaskSpec
from flip.site.policy import task_problem

CRITERION = {"table": "condition_occurrence", "concept_ids": [201826]}


def _nested(depth: int) -> list:
    value: list = [1]
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("definition", "words"),
    [
        ({"include": [CRITERION] * 1200}, "List should have at most 100 items"),
        ({"include": [CRITERION] * 60, "exclude": [CRITERION] * 41}, "101 criteria"),
        ({"include": [{**CRITERION, "concept_ids": [1] * 5001}]}, "at most 5000 items"),
        ({"extra": _nested(40)}, "nested deeper than 32"),
        ({"include": [{**CRITERION, "concept_ids": [2**70]}]}, "beyond 64 bits"),
        ({"include": [{"table": "measurement", "concept_ids": [1], "value_min": 1e300}]}, "1e+300"),
        ({"include": [{"table": "measurement", "concept_ids": [1], "value_max": "nan"}]}, "finite"),
    ],
)
def test_a_cohort_out_of_bounds_is_invalid_at_the_site(definition, words):
    with pytest.raises(ValidationError, match=re.escape(words)):
        CohortDefinition.model_validate({"name": "x", **definition})


def test_a_cohort_at_the_limit_is_valid():
    both = {"include": [CRITERION] * 50, "exclude": [CRITERION] * 50}
    assert len(CohortDefinition.model_validate({"name": "x", **both}).exclude) == 50


def test_an_overflowing_privacy_budget_is_a_reason_to_decline_not_a_crash():
    spec = mace_task().model_copy(
        update={"rounds": 3, "privacy": PrivacySpec(noise_multiplier=1e300, clipping_norm=1)}
    )
    reason = task_problem(SitePolicy(max_epsilon=5), 1, spec)
    assert reason is not None and "epsilon cannot be computed (OverflowError" in reason


@pytest.mark.parametrize("field", ["learning_rate", "l2"])
def test_a_task_spec_with_an_infinite_number_is_invalid(field):
    raw = mace_task().model_dump(mode="json") | {field: "inf"}
    with pytest.raises(ValidationError, match="finite"):
        TaskSpec.model_validate(raw)
