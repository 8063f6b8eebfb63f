"""The epsilon FLIP reports is the epsilon of the mechanism it runs.

Each test runs the real mechanism (Flower's DP wrapper as FLIP configures it, the site's
own clipping and noise, Opacus's DP-SGD), measures the noise that reaches the release and
the most one site (or record) can move it, and computes epsilon from those measurements
with dp-accounting directly, never with FLIP's own budget code.
"""

from __future__ import annotations

import numpy as np
import pytest
from dp_accounting import dp_event
from dp_accounting.rdp import rdp_privacy_accountant
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict

from flip.fl.privacy import (
    PrivacySpec,
    UpdateRefused,
    accounting_problem,
    privatise,
    with_privacy,
)
from flip.fl.strategies import make_strategy

DELTA = 1e-5
ROUNDS = 10
#: Three sites, the largest holding 54.5% of the examples (the issue's example).
EXAMPLES = (545, 300, 155)
BLOCK = 50  # coordinates of each site's update
FREE = 3000  # coordinates no site moves: pure noise


@pytest.fixture(autouse=True)
def _server_identity():
    """Flower stamps each message with the task it runs in: here, a ServerApp's of run 1."""
    from flwr.supercore.task_identity import TaskIdentity

    saved = (TaskIdentity._run_id, TaskIdentity._task_id, TaskIdentity._node_id)
    TaskIdentity.run_id, TaskIdentity.task_id, TaskIdentity.node_id = 1, 1, 0
    yield
    TaskIdentity._run_id, TaskIdentity._task_id, TaskIdentity._node_id = saved


def independent_epsilon(noise_multiplier: float, rounds: int, q: float = 1.0, steps: int = 0):
    """Epsilon from dp-accounting's RDP accountant, composed here."""
    gaussian = dp_event.GaussianDpEvent(noise_multiplier)
    event = gaussian if q >= 1 else dp_event.PoissonSampledDpEvent(q, gaussian)
    accountant = rdp_privacy_accountant.RdpAccountant()
    accountant.compose(dp_event.SelfComposedDpEvent(event, steps or rounds))
    return accountant.get_epsilon(DELTA)


class _Grid:
    """The one thing a strategy's configure_train asks of Flower's Grid: the connected nodes."""

    def __init__(self, n: int) -> None:
        self.nodes = list(range(1, n + 1))

    def get_node_ids(self):
        return self.nodes


def _replies(examples, clip: float) -> list[Message]:
    """One reply per site: an update far beyond the clipping norm, on its own block of
    coordinates (so the release shows each site's weight), and its example count."""
    size = BLOCK * len(examples) + FREE
    replies = []
    for i, n in enumerate(examples):
        update = np.zeros(size)
        update[i * BLOCK : (i + 1) * BLOCK] = 10 * clip / np.sqrt(BLOCK)
        content = RecordDict(
            {
                "arrays": ArrayRecord([update]),
                "metrics": MetricRecord({"num-examples": n, "loss": 0.1}),
            }
        )
        replies.append(Message(content, dst_node_id=0, message_type=MessageType.TRAIN))
    return replies


def _release(spec: PrivacySpec, examples, trials: int) -> np.ndarray:
    """The server's DP aggregation run `trials` rounds, one release per row."""
    n = len(examples)
    wrapper = with_privacy(make_strategy("fedavg", n, 0.1), spec, n)
    start = ArrayRecord([np.zeros(BLOCK * n + FREE)])
    released = []
    for round_ in range(1, trials + 1):
        list(wrapper.configure_train(round_, start, ConfigRecord({}), _Grid(n)))
        arrays, _ = wrapper.aggregate_train(round_, _replies(examples, spec.clipping_norm))
        released.append(arrays.to_numpy_ndarrays()[0])
    return np.stack(released)


def _measure(spec: PrivacySpec, examples) -> tuple[np.ndarray, float]:
    """Each site's weight in the release (seen in a run with almost no noise: the weights do
    not depend on it) and the standard deviation of the noise on the release."""
    quiet = _release(spec.model_copy(update={"noise_multiplier": 1e-9}), examples, 1)[0]
    per_coordinate = spec.clipping_norm / np.sqrt(BLOCK)
    n = len(examples)
    weights = np.array([quiet[i * BLOCK : (i + 1) * BLOCK].mean() for i in range(n)])
    return weights / per_coordinate, float(_release(spec, examples, 40)[:, BLOCK * n :].std())


@pytest.mark.parametrize("examples", [EXAMPLES, (500, 500)])
def test_central_dp_epsilon_is_that_of_the_noise_and_weights_really_used(examples):
    spec = PrivacySpec(noise_multiplier=1.0, clipping_norm=1.0, delta=DELTA)
    weights, sigma = _measure(spec, examples)
    # One site moves the release by at most its weight times C: the largest weight rules.
    sensitivity = weights.max() * spec.clipping_norm
    measured = independent_epsilon(sigma / sensitivity, ROUNDS)
    reported = spec.budget(ROUNDS)["epsilon"]
    assert reported == pytest.approx(measured, rel=0.04), (weights, sigma)
    assert weights == pytest.approx([1 / len(examples)] * len(examples), abs=1e-6)


def test_example_weights_would_have_spent_almost_twice_the_epsilon():
    """The figure the issue names: FedAvg weighted by examples, noise z*C/m, largest site
    0.545 of three; its real multiplier is ~0.61 and its epsilon ~37, not ~19."""
    real = 1.0 / (len(EXAMPLES) * max(EXAMPLES) / sum(EXAMPLES))
    assert real == pytest.approx(0.61, abs=0.005)
    assert independent_epsilon(real, ROUNDS) == pytest.approx(36.7, abs=0.1)
    assert PrivacySpec(noise_multiplier=1.0, clipping_norm=1.0).epsilon(ROUNDS) == (
        pytest.approx(19.05, abs=0.01)
    )


def test_a_round_a_site_missed_is_noised_for_the_sites_that_answered():
    spec = PrivacySpec(noise_multiplier=1.0, clipping_norm=2.0)
    wrapper = with_privacy(make_strategy("fedavg", 3, 0.1), spec, 3)
    start = ArrayRecord([np.zeros(BLOCK * 2 + FREE)])
    noise = []
    for round_ in range(1, 21):
        list(wrapper.configure_train(round_, start, ConfigRecord({}), _Grid(3)))
        arrays, _ = wrapper.aggregate_train(round_, _replies((100, 50), 2.0))  # one missing
        noise.append(arrays.to_numpy_ndarrays()[0][BLOCK * 2 :])
    assert np.std(noise) == pytest.approx(1.0 * 2.0 / 2, rel=0.03), "z*C/k for k=2 answers"


def test_adaptive_clipping_noises_at_the_norm_the_round_clipped_to():
    spec = PrivacySpec(noise_multiplier=1.0, clipping_norm=1.0, adaptive=True)
    wrapper = with_privacy(make_strategy("fedavg", 3, 0.1), spec, 3)
    start = ArrayRecord([np.zeros(BLOCK * 3 + FREE)])
    ratios = []
    for round_ in range(1, 21):
        list(wrapper.configure_train(round_, start, ConfigRecord({}), _Grid(3)))
        clipped_to = wrapper.clipping_norm
        arrays, _ = wrapper.aggregate_train(round_, _replies((10, 10, 10), clipped_to))
        release = arrays.to_numpy_ndarrays()[0]
        ratios.append(release[BLOCK * 3 :].std() / (clipped_to / 3))
    # All updates are clipped, so the norm grows each round; the noise must follow the
    # norm the round clipped to, and Flower's split of z gives the updates z_update >= z.
    assert wrapper.clipping_norm > 1.0
    assert np.mean(ratios) == pytest.approx(wrapper.noise_multiplier, rel=0.03)
    assert wrapper.noise_multiplier >= spec.noise_multiplier


@pytest.mark.parametrize("strategy", ["fedadam", "fedyogi", "fedavgm", "krum", "qfedavg"])
def test_central_dp_refuses_what_it_cannot_account(strategy):
    spec = PrivacySpec(noise_multiplier=1.0, clipping_norm=1.0)
    problem = accounting_problem(spec, strategy)
    assert problem is not None and strategy in problem and "\n" not in problem
    local = accounting_problem(spec.model_copy(update={"clipping": "client"}), strategy)
    if strategy == "qfedavg":  # it weighs sites by the exact loss no site sends under DP
        assert local is not None and "exact training loss" in local
    else:
        assert local is None
    from flip.fl.server import make_server_app

    with pytest.raises(ValueError, match="central DP accounts an equal-weight mean"):
        make_server_app(
            ConfigRecord({}),
            ArrayRecord([np.zeros(2)]),
            rounds=1,
            n_sites=2,
            strategy=strategy,
            privacy=spec,
        )


def test_local_dp_noise_and_clipping_are_what_the_accountant_assumed():
    """A site's own release: its update clipped to C whatever its size, and noise z*C on
    every weight; one site moves it by at most C, so its multiplier is noise / C."""
    spec = PrivacySpec(clipping="client", noise_multiplier=0.8, clipping_norm=0.5)
    start = {"w": np.zeros(20_000), "b": np.zeros(1)}
    trained = {"w": np.full(20_000, 3.0), "b": np.array([1.0])}
    noised = privatise(start, trained, spec)
    signal = 3.0 * spec.clipping_norm / np.sqrt(9.0 * 20_000 + 1.0)
    noise = noised["w"] - signal
    assert noise.mean() == pytest.approx(0, abs=0.02)
    multiplier = noise.std() / spec.clipping_norm
    assert multiplier == pytest.approx(0.8, rel=0.03)
    assert independent_epsilon(multiplier, ROUNDS) == pytest.approx(spec.epsilon(ROUNDS), rel=0.06)
    quiet = spec.model_copy(update={"noise_multiplier": 1e-9})
    update = privatise(start, trained, quiet)
    norm = np.sqrt(sum(float(np.sum(v**2)) for v in update.values()))
    assert norm == pytest.approx(spec.clipping_norm, rel=1e-6)


def test_dp_sgd_adds_the_noise_its_accountant_assumes():
    """Opacus at the site: with every input zero, no example moves the weights, so what moves
    them is the noise alone: z*C on each step's summed gradient, over the expected batch."""
    import math

    import torch

    from flip.data.features.tabular import TabularData
    from flip.fl.dp_sgd import record_epsilon, sample_rate, steps_per_round, train_dp

    n, width, batch, epochs, lr = 64, 3000, 16, 2, 0.5
    data = TabularData(np.arange(n), np.zeros((n, width), np.float32), np.ones(n, np.float32), [])
    model = torch.nn.Linear(width, 1)
    before = model.weight.detach().clone()
    train_dp(
        model,
        data,
        epochs=epochs,
        learning_rate=lr,
        batch_size=batch,
        l2=0.0,
        noise_multiplier=1.3,
        clipping_norm=0.7,
    )
    steps = steps_per_round(n, batch, epochs)
    moved = (model.weight.detach() - before).numpy().ravel()
    per_step = moved.std() / (lr * math.sqrt(steps)) * batch  # the noise on a summed gradient
    assert per_step / 0.7 == pytest.approx(1.3, rel=0.05)
    q = sample_rate(n, batch)
    expected = independent_epsilon(per_step / 0.7, 0, q=q, steps=steps)
    assert record_epsilon(1.3, n, batch, steps, DELTA) == pytest.approx(expected, rel=0.06)


def test_a_record_level_models_lineage_carries_each_sites_opacus_epsilon():
    from flip.fl.registry import federated_lineage
    from flip.fl.tasks import mace_task

    privacy = PrivacySpec(level="record", clipping="client", noise_multiplier=1.2, clipping_norm=1)
    spec = mace_task().model_copy(update={"privacy": privacy, "batch_size": 32, "local_epochs": 2})
    per_site = {"a": {"n_train": 1800}, "b": {"n_train": 225}}
    lineage = federated_lineage(spec, rounds=3, per_site=per_site, round_metrics=[])
    by_site = lineage["privacy"]["epsilon_by_site"]
    for name, n in (("a", 1800), ("b", 225)):
        batches = -(-n // 32)
        expected = independent_epsilon(1.2, 0, q=1 / batches, steps=3 * 2 * batches)
        assert by_site[name] == pytest.approx(expected, rel=0.05)
    assert lineage["privacy"]["epsilon"] == by_site["b"], "the smaller site spends more"


def test_privatise_refuses_what_it_cannot_noise_and_resets_integer_arrays():
    spec = PrivacySpec(clipping="client", noise_multiplier=1.0, clipping_norm=1.0)
    start = {"w": np.zeros(4, dtype=np.float32), "count": np.array(3, dtype=np.int64)}
    smuggled = {"w": np.arange(4, dtype=np.float32).view(np.int32), "count": start["count"]}
    with pytest.raises(UpdateRefused, match="came back as int32"):
        privatise(start, smuggled, spec)
    with pytest.raises(UpdateRefused, match="NaN or inf"):
        privatise(start, {**start, "w": np.array([0, np.inf, 0, 0], dtype=np.float32)}, spec)
    with pytest.raises(UpdateRefused, match="not the ones sent"):
        privatise(start, {**start, "extra": np.ones(2)}, spec)
    counted = privatise(start, {**start, "count": np.array(99, dtype=np.int64)}, spec)
    assert counted["count"] == 3  # a batch counter goes back as sent, never as trained
