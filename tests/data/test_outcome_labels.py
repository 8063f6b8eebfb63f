"""Outcome labels from the store: binary, multi-class, a measurement's value, time to event."""

from datetime import date

import pytest
from pydantic import ValidationError
from sqlalchemy import insert

from flip.data.cdm import schema
from flip.data.features import TabularSpec, extract_raw

ENTRY, MI, STROKE, HBA1C = 3004249, 4329847, 443454, 3004410
FEATURE = {"name": "age", "source": "age"}


def _spec(**outcome) -> TabularSpec:
    return TabularSpec(entry_concept_ids=[ENTRY], features=[FEATURE], horizon_days=365, **outcome)


@pytest.fixture
def cohort(store):
    """Six persons entering on 2020-01-01, each with a known future."""
    at = date(2020, 1, 1)
    persons = [
        {
            "person_id": pid,
            "gender_concept_id": 8507,
            "year_of_birth": 1960,
            "race_concept_id": 0,
            "ethnicity_concept_id": 0,
        }
        for pid in range(1, 7)
    ]
    entries = [
        {
            "measurement_id": pid,
            "person_id": pid,
            "measurement_concept_id": ENTRY,
            "measurement_date": at,
            "measurement_type_concept_id": 0,
            "value_as_number": 120.0,
        }
        for pid in range(1, 7)
    ]
    later = [  # (person, concept, date): 1 MI at day 31; 2 stroke then MI the same later
        (1, MI, date(2020, 2, 1)),
        (2, STROKE, date(2020, 3, 1)),
        (2, MI, date(2020, 4, 1)),
        (3, MI, date(2022, 1, 1)),  # beyond the horizon
        (5, MI, date(2019, 6, 1)),  # before entry: history, not outcome
    ]
    conditions = [
        {
            "condition_occurrence_id": i,
            "person_id": pid,
            "condition_concept_id": concept,
            "condition_start_date": when,
            "condition_type_concept_id": 0,
        }
        for i, (pid, concept, when) in enumerate(later, start=1)
    ]
    labs = [  # HbA1c after entry for 1 (two values: the first counts) and 4
        (1, date(2020, 3, 1), 7.5),
        (1, date(2020, 6, 1), 6.9),
        (4, date(2020, 2, 10), 5.4),
    ]
    measurements = [
        {
            "measurement_id": 100 + i,
            "person_id": pid,
            "measurement_concept_id": HBA1C,
            "measurement_date": when,
            "measurement_type_concept_id": 0,
            "value_as_number": value,
        }
        for i, (pid, when, value) in enumerate(labs)
    ]
    periods = [  # 4 leaves follow-up at day 91, 5 has none after entry
        {
            "observation_period_id": pid,
            "person_id": pid,
            "observation_period_start_date": date(2015, 1, 1),
            "observation_period_end_date": end,
            "period_type_concept_id": 0,
        }
        for pid, end in ((4, date(2020, 4, 1)), (5, date(2020, 1, 1)))
    ]
    with store.begin() as conn:
        conn.execute(insert(schema.person), persons)
        conn.execute(insert(schema.measurement), entries + measurements)
        conn.execute(insert(schema.condition_occurrence), conditions)
        conn.execute(insert(schema.observation_period), periods)
        conn.execute(insert(schema.death), [{"person_id": 6, "death_date": date(2020, 1, 11)}])
    return store


def test_binary_and_multiclass_labels_follow_the_first_event_within_the_horizon(cohort):
    binary = extract_raw(cohort, _spec(outcome_concept_ids=[MI]))
    assert binary.person_ids.tolist() == [1, 2, 3, 4, 5, 6]
    assert binary.y.tolist() == [1, 1, 0, 0, 0, 0]
    classes = [{"name": "mi", "concept_ids": [MI]}, {"name": "stroke", "concept_ids": [STROKE]}]
    multi = extract_raw(cohort, _spec(outcome="multiclass", outcome_classes=classes))
    assert multi.y.tolist() == [1, 2, 0, 0, 0, 0]  # 2's stroke came first


def test_regression_labels_are_the_first_value_and_unlabelled_persons_are_left_out(cohort):
    data = extract_raw(cohort, _spec(outcome="regression", outcome_concept_ids=[HBA1C]))
    assert data.person_ids.tolist() == [1, 4]
    assert data.y.tolist() == pytest.approx([7.5, 5.4])


def test_time_to_event_is_censored_at_horizon_follow_up_end_or_death(cohort):
    data = extract_raw(cohort, _spec(outcome="time-to-event", outcome_concept_ids=[MI]))
    assert data.y.shape == (5, 2)
    by_person = dict(zip(data.person_ids.tolist(), data.y.tolist(), strict=True))
    assert by_person == {
        1: [31, 1],  # MI on day 31
        2: [91, 1],  # MI on day 91
        3: [365, 0],  # MI after the horizon: censored at it
        4: [91, 0],  # left follow-up on day 91
        6: [10, 0],  # died on day 10
    }  # 5 has no follow-up after entry: no label
    train, test = data.split(0.4, seed=0)
    assert train.y.shape[1] == 2 and len(train.y) + len(test.y) == 5


@pytest.mark.parametrize(
    "outcome, message",
    [
        ({"outcome": "binary"}, "names its outcome_concept_ids"),
        ({"outcome": "multiclass", "outcome_classes": [{"name": "a", "concept_ids": [1]}]}, "two"),
        (
            {
                "outcome": "regression",
                "outcome_concept_ids": [1],
                "outcome_classes": [{"name": "a", "concept_ids": [1]}],
            },
            "no outcome_classes",
        ),
    ],
)
def test_an_outcome_must_be_defined_for_its_kind(outcome, message):
    with pytest.raises(ValidationError, match=message):
        _spec(**outcome)
