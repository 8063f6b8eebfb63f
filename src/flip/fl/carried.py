"""Evaluation carried with the train reply: one message per site per round, not two.

With `evaluate_every` k, round n's train message asks each site (`EVALUATE_RECEIVED`) to
score the weights it received — round n-1's global model — on its validation split as
they came (a personalised site: with its own layers as round n found them), and the site's
reply carries those metrics (`EVALUATED`, beside its one MetricRecord the strategy
aggregates). Separate evaluate messages go out only after
every k-th round and the last, and a round scored that way is not scored again by the
next train reply, so each global model is scored once. The site counts each carried
evaluation against its per-run bound on validation evaluations, as an evaluate message.

A hub run carries evaluation by default (`hub_every`): evaluate messages only after the
last round, or every `TaskSpec.evaluate_every` rounds when the task names it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy
from flwr.serverapp.strategy.strategy_utils import aggregate_metricrecords

if TYPE_CHECKING:
    from flip.fl.tasks.base import TaskSpec

#: The train config key asking a site to score the weights it received before training.
EVALUATE_RECEIVED = "evaluate-received"
#: The reply record holding a site's metrics of the weights it received.
EVALUATED = "evaluated"

#: Records round `number`'s aggregated validation metrics (from 1, the whole run's count).
Scored = Callable[[int, MetricRecord], None]


def hub_every(spec: TaskSpec, rounds: int) -> int | None:
    """A hub run's `evaluate_every`: the task's, else `rounds` (evaluate messages after the
    last round only); None under secure aggregation, which evaluates every round."""
    if spec.secure_aggregation:
        return None
    return spec.evaluate_every or rounds


class CarriedEvaluation(Strategy):
    """`strategy` with each global model scored by the next train replies, and by evaluate
    messages only after every `every`-th round and round `rounds` (the last).

    `scored(number)` says whether round `number` has metrics; `score(number, metrics)`
    records a round's carried ones, under its number (a round whose replies all failed
    stays unscored, and no later round moves to its place). Round numbers are the whole
    run's (wrap it inside `ContinuedRounds`).
    """

    def __init__(
        self,
        strategy: Strategy,
        every: int,
        rounds: int,
        scored: Callable[[int], bool],
        score: Scored,
    ) -> None:
        if every < 1:
            raise ValueError("evaluate_every must be at least 1")
        self.strategy = strategy
        self.every = every
        self.rounds = rounds
        self.scored = scored
        self.score = score

    def summary(self) -> None:
        """The wrapped strategy's summary."""
        self.strategy.summary()

    def evaluates(self, server_round: int) -> bool:
        """Whether round `server_round`'s global model is scored by evaluate messages."""
        return server_round % self.every == 0 or server_round >= self.rounds

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """The wrapped strategy's, asking the sites to score what they receive when the last
        global model has no metrics yet."""
        carry = server_round > 1 and not self.scored(server_round - 1)
        sent = ConfigRecord({**config, EVALUATE_RECEIVED: carry})
        return self.strategy.configure_train(server_round, arrays, sent, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """The wrapped strategy's; the carried metrics, weighted by validation examples,
        become the previous round's."""
        replies = list(replies)
        carried = [
            RecordDict({"metrics": MetricRecord(dict(r.content[EVALUATED]))})
            for r in replies
            if not r.has_error() and EVALUATED in r.content
        ]
        if carried and server_round > 1 and not self.scored(server_round - 1):
            self.score(server_round - 1, aggregate_metricrecords(carried, "num-examples"))
        return self.strategy.aggregate_train(server_round, replies)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """The wrapped strategy's after every `every`-th round and the last; none otherwise."""
        if not self.evaluates(server_round):
            return []
        return self.strategy.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        """The wrapped strategy's, for the rounds it evaluates."""
        if not self.evaluates(server_round):
            return None
        return self.strategy.aggregate_evaluate(server_round, replies)
