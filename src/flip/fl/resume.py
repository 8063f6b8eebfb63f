"""What a resumed run needs beyond the global model to be the run it resumes.

A strategy's state (FedAdam/FedYogi/FedAdagrad moments, FedAvgM's momentum), the
adaptive clipping norm of a differential-privacy wrapper, and the server's random
streams (the DP noise and Flower's node sampling) are saved with every round's
checkpoint and put back on resume. Round numbers go on from the checkpoint's, so
what depends on them (FedAdam's bias correction, the sites' training seeds, which
are drawn from the task's seed and the round) continues as in an unbroken run.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

#: Strategy attributes that carry state from one round to the next.
_ARRAY_DICTS = ("m_t", "v_t")
_ARRAY_LISTS = ("momentum_vector",)
_FLOATS = ("clipping_norm",)


class ContinuedRounds(Strategy):
    """A strategy whose rounds are numbered from `done + 1`: Flower's `start` counts from 1."""

    def __init__(self, strategy: Strategy, done: int) -> None:
        self.strategy = strategy
        self.done = done
        #: The round (of the whole run) whose evaluate replies are being aggregated.
        self.evaluating = done

    def summary(self) -> None:
        """The wrapped strategy's summary."""
        self.strategy.summary()

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """The wrapped strategy's, for the round number of the whole run."""
        return self.strategy.configure_train(server_round + self.done, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """The wrapped strategy's, for the round number of the whole run."""
        return self.strategy.aggregate_train(server_round + self.done, replies)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """The wrapped strategy's, for the round number of the whole run."""
        return self.strategy.configure_evaluate(server_round + self.done, arrays, config, grid)

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        """The wrapped strategy's, for the round number of the whole run (`evaluating`)."""
        self.evaluating = server_round + self.done
        return self.strategy.aggregate_evaluate(self.evaluating, replies)


def _chain(strategy: Strategy) -> Iterator[Strategy]:
    """The strategy and every strategy it wraps (DP wrappers keep theirs in `.strategy`)."""
    seen: set[int] = set()
    while isinstance(strategy, Strategy) and id(strategy) not in seen:
        seen.add(id(strategy))
        yield strategy
        strategy = getattr(strategy, "strategy", None)


def strategy_state(strategy: Strategy) -> list[dict[str, Any]]:
    """The round-to-round state of each layer of `strategy`, as tensors and floats."""
    layers = []
    for layer in _chain(strategy):
        state: dict[str, Any] = {}
        for name in _ARRAY_DICTS:
            if value := getattr(layer, name, None):
                state[name] = {k: torch.from_numpy(np.array(v)) for k, v in value.items()}
        for name in _ARRAY_LISTS:
            if (value := getattr(layer, name, None)) is not None:
                state[name] = [torch.from_numpy(np.array(v)) for v in value]
        for name in _FLOATS:
            if (value := getattr(layer, name, None)) is not None:
                state[name] = float(value)
        layers.append(state)
    return layers


def restore_strategy(strategy: Strategy, layers: list[dict[str, Any]]) -> None:
    """Put back what `strategy_state` saved of a strategy built the same way."""
    chain = list(_chain(strategy))
    if len(chain) != len(layers):
        raise ValueError("the checkpoint's strategy is not this run's: resume with its options")
    for layer, state in zip(chain, layers, strict=True):
        for name, value in state.items():
            if name in _ARRAY_DICTS:
                value = {k: v.numpy() for k, v in value.items()}
            elif name in _ARRAY_LISTS:
                value = [v.numpy() for v in value]
            setattr(layer, name, value)


def seed_server(seed: int) -> None:
    """Seed the server's random streams (NumPy's for DP noise, Python's for sampling)."""
    np.random.seed(seed % 2**32)
    random.seed(seed)


def random_state() -> dict[str, Any]:
    """The server's random streams, as a checkpoint keeps them."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached],
        "python": [version, list(internal), gauss_next],
    }


def restore_random(state: dict[str, Any]) -> None:
    """Put back the server's random streams saved by `random_state`."""
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
