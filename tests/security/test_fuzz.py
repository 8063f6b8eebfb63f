"""Issue 19: the long fuzz run (slow set). Property-based tests of what parses untrusted JSON
(the hub's body guard, cohort definitions, task specs), and a stateful schemathesis run
over the hub's API."""

import json

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from flip.bounds import MAX_CRITERIA
from flip.config import SitePolicy
from flip.data.cohort import CohortDefinition
from flip.data.cohort.sql import person_ids
from flip.fl.tasks import mace_task
from flip.fl.tasks.base import TaskSpec, task_hash
from flip.hub.json_guard import body_problems
from flip.site.policy import task_problem

pytestmark = pytest.mark.slow

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(alphabet=st.characters(codec=None), max_size=20)
)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=40,
)
CRITERION = st.fixed_dictionaries(
    {
        "table": st.sampled_from(["condition_occurrence", "measurement", "note", "nonsense"]),
        "concept_ids": st.lists(SCALARS, max_size=3),
    },
    optional={"value_min": SCALARS, "value_max": SCALARS, "start": SCALARS, "descendants": SCALARS},
)
DEFINITION = st.fixed_dictionaries(
    {"name": st.text(max_size=5)},
    optional={
        "include": st.lists(CRITERION, max_size=MAX_CRITERIA + 5),
        "exclude": st.lists(CRITERION, max_size=3),
        "age_min": SCALARS,
        "sex": st.lists(st.sampled_from(["female", "male", "x"]), max_size=2),
        "extra": JSON,
    },
)
SLOW = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))


@SLOW
@given(body=st.binary(max_size=200) | JSON.map(lambda v: json.dumps(v).encode()))
def test_the_body_guard_never_raises_and_what_it_passes_can_be_stored(body):
    problems = body_problems(body)
    if not problems and body.strip():
        orjson.dumps(json.loads(body))  # what passes, the hub can store and send back


@SLOW
@given(raw=DEFINITION)
def test_a_cohort_definition_parses_or_is_refused_and_what_parses_compiles(raw):
    try:
        definition = CohortDefinition.model_validate(raw)
    except ValidationError:
        return
    assert len(definition.include) + len(definition.exclude) <= MAX_CRITERIA
    str(person_ids(definition))


SPEC = mace_task().model_dump(mode="json")


@SLOW
@given(
    changes=st.dictionaries(
        st.sampled_from(["learning_rate", "l2", "rounds", "seed", "test_fraction", "privacy"]),
        SCALARS | st.fixed_dictionaries({"noise_multiplier": SCALARS, "clipping_norm": SCALARS}),
        max_size=3,
    )
)
def test_a_task_spec_parses_or_is_refused_and_the_policy_always_answers(changes):
    try:
        spec = TaskSpec.model_validate(SPEC | changes)
    except ValidationError:
        return
    task_hash(spec)
    reason = task_problem(SitePolicy(max_epsilon=5.0, max_rounds=50), 1, spec)
    assert reason is None or isinstance(reason, str)
