"""Evaluation carried with the train reply: each global model is scored once, by the next
train replies or (every k rounds and the last) by evaluate messages."""

from dataclasses import dataclass, field

import pytest
from flwr.app import ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from flwr.serverapp.strategy import Strategy

from flip.fl.carried import EVALUATE_RECEIVED, EVALUATED, CarriedEvaluation


@dataclass
class Reply:
    content: RecordDict
    error: bool = False

    def has_error(self) -> bool:
        return self.error


@dataclass
class Inner(Strategy):
    """A strategy that records what it is asked and sends one message per call."""

    train_configs: list = field(default_factory=list)
    evaluated_rounds: list = field(default_factory=list)

    def summary(self) -> None:
        pass

    def configure_train(self, server_round, arrays, config, grid):
        self.train_configs.append((server_round, dict(config)))
        return ["train"]

    def aggregate_train(self, server_round, replies):
        return None, MetricRecord({"num-examples": float(len(list(replies)))})

    def configure_evaluate(self, server_round, arrays, config, grid):
        self.evaluated_rounds.append(server_round)
        return ["evaluate"]

    def aggregate_evaluate(self, server_round, replies):
        return MetricRecord({"auroc": 0.5})


def _reply(auroc: float, n: float) -> Reply:
    metrics = {"auroc": auroc, "num-examples": n}
    return Reply(
        RecordDict(
            {"metrics": MetricRecord({"num-examples": 1.0}), EVALUATED: ConfigRecord(metrics)}
        )
    )


def test_each_round_is_scored_once_by_the_next_train_replies_or_by_evaluate_messages():
    inner, scores = Inner(), {}
    carried = CarriedEvaluation(
        inner, 3, 5, lambda n: n in scores, lambda n, m: scores.__setitem__(n, dict(m))
    )
    arrays, config = ArrayRecord(), ConfigRecord({"project": "p"})
    sent = {}
    for number in range(1, 6):
        carried.configure_train(number, arrays, config, None)
        replies = [_reply(0.6, 10.0), _reply(0.9, 30.0), Reply(RecordDict(), error=True)]
        if inner.train_configs[-1][1][EVALUATE_RECEIVED]:
            carried.aggregate_train(number, replies)
        else:
            carried.aggregate_train(number, [Reply(RecordDict())])
        sent[number] = list(carried.configure_evaluate(number, arrays, config, None))
        found = carried.aggregate_evaluate(number, [])
        if sent[number]:
            scores[number] = dict(found)
        else:
            assert found is None
    asked = [n for n, c in inner.train_configs if c[EVALUATE_RECEIVED]]
    assert asked == [2, 3, 5], "a round's train carries the last round's score unless it has one"
    assert inner.evaluated_rounds == [3, 5], "evaluate messages only every 3rd round and the last"
    assert all(c["project"] == "p" for _, c in inner.train_configs)
    assert sorted(scores) == [1, 2, 3, 4, 5]
    assert scores[1]["auroc"] == pytest.approx((0.6 * 10 + 0.9 * 30) / 40), "by validation rows"


def test_evaluate_every_is_at_least_one():
    with pytest.raises(ValueError, match="at least 1"):
        CarriedEvaluation(Inner(), 0, 3, lambda n: False, lambda n, m: None)


def test_a_secure_aggregation_run_refuses_carried_evaluation():
    from flip.fl.server import task_server_app
    from flip.fl.tasks import mace_task

    secure = mace_task().model_copy(update={"secure_aggregation": True})
    with pytest.raises(ValueError, match="no evaluate_every"):
        task_server_app("p", secure, rounds=2, n_sites=2, evaluate_every=2)


def test_a_tasks_evaluate_every_is_in_its_hash_only_when_set():
    from flip.fl.tasks import mace_task, task_hash

    plain = mace_task()
    assert "evaluate_every" not in plain.canonical_json().decode(), "older tasks keep their hash"
    every = type(plain).model_validate({**plain.model_dump(), "evaluate_every": 2})
    assert task_hash(every) != task_hash(plain)


def test_secure_aggregation_takes_no_evaluate_every_above_one():
    from pydantic import ValidationError

    from flip.fl.tasks import mace_task

    spec = {**mace_task().model_dump(), "secure_aggregation": True}
    with pytest.raises(ValidationError, match="no evaluate_every above 1"):
        type(mace_task()).model_validate({**spec, "evaluate_every": 2})
    assert type(mace_task()).model_validate({**spec, "evaluate_every": 1}).evaluate_every == 1
