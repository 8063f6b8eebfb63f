"""Differential privacy: what is clipped and noised, where, and the budget it really spends.

Three mechanisms, one per `PrivacySpec`:

- **central** (`level: site`, `clipping: server`): the server clips each site's update
  to C, averages them **with equal weights** and adds Gaussian noise of standard
  deviation z*C/k for the k sites that answered. One site moves that mean by at
  most C/k, so each round is a Gaussian mechanism of multiplier z. (Weighting by
  examples would let the largest site move it by w_max*C > C/k: its multiplier
  would be z/(k*w_max), ~0.61 rather than 1 for a site of 54.5% of three; FLIP
  never weights updates by examples under DP.) Only strategies whose release is
  that mean can be accounted this way: FedAvg and FedProx; the rest are refused.
- **local** (`level: site`, `clipping: client`): each site clips its own update to the
  approved C and adds Gaussian noise of standard deviation z*C before it leaves,
  whatever the server sends. The site's guarantee needs no trust in the server,
  and any strategy is post-processing.
- **record** (`level: record`): DP-SGD at each site with Opacus (per-example clipping
  to C, noise z*C per batch, Poisson-sampled batches); the site's own Opacus RDP
  accountant gives the epsilon, which depends on the site's rows.

Site-level budgets (epsilon at delta over all rounds) come from the RDP accountant
of Google's dp-accounting library. Clipping is fixed or, centrally, adaptive
(Andrew et al., 2021): each round C moves geometrically toward a target quantile
of the sites' update norms, estimated from a noisy count of clipped sites; Flower
splits z between the update noise and the count noise so that a round is still a
Gaussian mechanism of multiplier z. Flower 1.41's adaptive wrappers step the norm
the wrong way and noise a round at the norm after the step (not the one it clipped
to); FLIP's subclasses step it the paper's way and noise at the round's own norm.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import (
    DifferentialPrivacyServerSideAdaptiveClipping,
    DifferentialPrivacyServerSideFixedClipping,
    Strategy,
)
from pydantic import BaseModel, ConfigDict, Field, model_validator

#: Strategies whose release is the (equal-weight) mean of the clipped updates: the only
#: ones central DP can account. The rest keep state from un-noised aggregates (FedAdam,
#: FedYogi, FedAdagrad, FedAvgM), weigh sites by their losses (QFedAvg) or select and
#: sort updates (FedMedian, trimmed mean, Krum, Bulyan), so one site moves the release
#: by more than C/k.
ACCOUNTED_STRATEGIES = ("fedavg", "fedprox")

#: Keys of the config the server sends with every message of a DP run: the privacy spec it
#: runs and its strategy, which a site under central DP checks against what it approved.
KEY_PRIVACY = "flip-privacy"
KEY_STRATEGY = "flip-strategy"


class PrivacySpec(BaseModel):
    """How updates (or, at `record` level, each example's gradient) are clipped and noised."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    level: Literal["site", "record"] = Field(
        "site",
        description="site: a whole site's update is protected (central or local DP); "
        "record: each patient's record, by DP-SGD (Opacus) at the site.",
    )
    clipping: Literal["server", "client"] = Field(
        "server",
        description="server: central DP (the server clips and noises); client: the site "
        "clips and noises its own update (record level: always client).",
    )
    noise_multiplier: float = Field(gt=0)
    clipping_norm: float = Field(gt=0, description="The norm, or with `adaptive` its start.")
    delta: float = Field(
        1e-5,
        gt=0,
        le=1e-3,
        description="At most 1e-3 (a delta near 1 makes any epsilon meaningless); a site also "
        "refuses a delta above its policy's max_delta or at least 1 / its training rows.",
    )
    adaptive: bool = Field(
        False, description="Adapt the clipping norm each round toward `target_quantile`."
    )
    target_quantile: float = Field(
        0.5, gt=0, lt=1, description="Adaptive: the share of sites whose update goes unclipped."
    )
    clip_norm_lr: float = Field(0.2, gt=0, description="Adaptive: the norm's step size.")

    @model_validator(mode="after")
    def _sound(self) -> PrivacySpec:
        if self.level == "record" and self.clipping != "client":
            raise ValueError("record-level DP-SGD clips at the site: set clipping: client")
        if self.adaptive and self.clipping == "client":
            raise ValueError(
                "a site clips to the approved norm, so adaptive clipping (a norm the server "
                "moves) is server-side only"
            )
        return self

    @property
    def mechanism(self) -> str:
        """central, local or record (see the module's docstring)."""
        if self.level == "record":
            return "record"
        return "central" if self.clipping == "server" else "local"

    def epsilon(self, rounds: int, sampling_rate: float = 1.0) -> float:
        """The site-level epsilon spent by `rounds` rounds at this spec's delta (RDP accountant)."""
        if self.level == "record":
            raise ValueError("a record-level epsilon depends on each site's rows: see dp_sgd")
        return gaussian_epsilon(self.noise_multiplier, rounds, self.delta, sampling_rate)

    def budget(self, rounds: int, sampling_rate: float = 1.0) -> dict[str, object]:
        """A JSON-ready report of the mechanism and the budget spent."""
        record = self.level == "record"
        return {
            "mechanism": {
                "central": "gaussian, site-level, central (equal-weight mean noised by the server)",
                "local": "gaussian, site-level, local (each site noises its own update)",
                "record": "DP-SGD, record-level, at each site (Opacus)",
            }[self.mechanism],
            "clipping": f"{self.clipping}-side {'adaptive' if self.adaptive else 'fixed'}",
            "noise_multiplier": self.noise_multiplier,
            "clipping_norm": self.clipping_norm,
            **(
                {"target_quantile": self.target_quantile, "clip_norm_lr": self.clip_norm_lr}
                if self.adaptive
                else {}
            ),
            "rounds": rounds,
            "sampling_rate": sampling_rate,
            "delta": self.delta,
            "epsilon": None if record else round(self.epsilon(rounds, sampling_rate), 4),
            "accountant": "RDP (Opacus), per site" if record else "RDP (dp-accounting)",
        }


def gaussian_epsilon(
    noise_multiplier: float, rounds: int, delta: float, sampling_rate: float = 1.0
) -> float:
    """Epsilon at `delta` of `rounds` Gaussian mechanisms of `noise_multiplier` (RDP)."""
    from dp_accounting import dp_event  # 0.7 s to import: only where a budget is computed
    from dp_accounting.rdp import rdp_privacy_accountant

    gaussian = dp_event.GaussianDpEvent(noise_multiplier)
    step = (
        gaussian if sampling_rate >= 1 else dp_event.PoissonSampledDpEvent(sampling_rate, gaussian)
    )
    accountant = rdp_privacy_accountant.RdpAccountant()
    accountant.compose(dp_event.SelfComposedDpEvent(step, rounds))
    return float(accountant.get_epsilon(delta))


def accounting_problem(spec: PrivacySpec, strategy: str) -> str | None:
    """Why a run of `strategy` under `spec` cannot be accounted, in one line, or None."""
    if spec.mechanism == "central" and strategy not in ACCOUNTED_STRATEGIES:
        return (
            f"central DP accounts an equal-weight mean of clipped updates (fedavg, fedprox); "
            f"{strategy} releases more than that: use clipping: client or level: record"
        )
    if strategy == "qfedavg":
        return (
            "qfedavg weighs sites by their exact training loss, which a site under DP does "
            "not send: use another strategy"
        )
    return None


def delta_problem(spec: PrivacySpec, n_rows: int) -> str | None:
    """Why the spec's delta is too large for a site of `n_rows` protected rows, or None: at
    delta >= 1/n a mechanism may publish one person's record outright and still qualify."""
    if spec.delta * n_rows >= 1:
        return f"the task's delta {spec.delta:g} is not below 1 / the site's training rows"
    return None


class _Accounted:
    """What FLIP adds to Flower's central-DP wrappers so the accountant's assumption holds:
    equal weights, noise for the k sites that answered (z*C/k), and noise at the norm the
    round's updates were clipped to."""

    strategy: Strategy
    clipping_norm: float
    num_sampled_clients: int
    _round_norm: float | None = None

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        self._round_norm = self.clipping_norm
        return super().configure_train(server_round, arrays, config, grid)  # type: ignore[misc]

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        answered = list(replies)
        if answered and not any(reply.has_error() for reply in answered):
            self.num_sampled_clients = len(answered)
            weight = getattr(self.strategy, "weighted_by_key", "num-examples")
            for reply in answered:
                for record in reply.content.metric_records.values():
                    record[weight] = 1.0
        return super().aggregate_train(server_round, answered)  # type: ignore[misc]

    def _add_noise_to_aggregated_arrays(self, aggregated: ArrayRecord) -> ArrayRecord:
        stepped = self.clipping_norm
        self.clipping_norm = self._round_norm or stepped
        try:
            return super()._add_noise_to_aggregated_arrays(aggregated)  # type: ignore[misc]
        finally:
            self.clipping_norm = stepped


class _TowardTheQuantile:
    """Step the clipping norm as Andrew et al. do: up when more than the target share of
    updates was clipped, down when fewer."""

    clipping_norm: float
    clip_norm_lr: float
    target_clipped_quantile: float

    def _geometric_update(self, clipped_fraction: float) -> None:
        step = self.clip_norm_lr * (clipped_fraction - self.target_clipped_quantile)
        self.clipping_norm *= math.exp(step)


class ServerSideFixedClipping(_Accounted, DifferentialPrivacyServerSideFixedClipping):
    """Flower's server-side fixed clipping, accounted: equal weights, noise for who answered."""


class ServerSideAdaptiveClipping(
    _Accounted, _TowardTheQuantile, DifferentialPrivacyServerSideAdaptiveClipping
):
    """Flower's server-side adaptive clipping, accounted, its norm stepped toward the target."""


def count_noise(spec: PrivacySpec, n_sites: int) -> float:
    """The standard deviation of the noise on adaptive clipping's count of clipped sites:
    Flower's sites / 20, raised to z where that is too small for Flower's split of z
    (then the update's own noise grows by 1 / sqrt(0.75), about 15%)."""
    return max(n_sites / 20, spec.noise_multiplier)


def with_privacy(strategy: Strategy, spec: PrivacySpec, n_sites: int) -> Strategy:
    """Wrap a strategy in Flower's central-DP wrapper (accounted) where the spec is central;
    under local or record-level DP the sites noise, and the strategy is returned as is."""
    if spec.mechanism != "central":
        return strategy
    if spec.adaptive:
        return ServerSideAdaptiveClipping(
            strategy,
            noise_multiplier=spec.noise_multiplier,
            num_sampled_clients=n_sites,
            initial_clipping_norm=spec.clipping_norm,
            target_clipped_quantile=1 - spec.target_quantile,
            clip_norm_lr=spec.clip_norm_lr,
            clipped_count_stddev=count_noise(spec, n_sites),
        )
    return ServerSideFixedClipping(
        strategy,
        noise_multiplier=spec.noise_multiplier,
        clipping_norm=spec.clipping_norm,
        num_sampled_clients=n_sites,
    )


def privacy_config(spec: PrivacySpec | None, strategy: str) -> dict[str, str]:
    """What the server tells every site it runs: its privacy spec and strategy."""
    if spec is None:
        return {}
    return {KEY_PRIVACY: spec.model_dump_json(), KEY_STRATEGY: strategy}


def server_config_problem(
    spec: PrivacySpec | None, config: Mapping[str, Any], strategy: str = "fedavg"
) -> str | None:
    """Why a site under central DP refuses the server's run: it names no privacy spec, or
    another one than the site approved, or another strategy than the approved `strategy`,
    or one that cannot be accounted; or None."""
    if spec is None or spec.mechanism != "central":
        return None
    sent = config.get(KEY_PRIVACY)
    try:
        named_spec = None if sent is None else PrivacySpec.model_validate_json(str(sent))
    except ValueError:  # not a privacy spec at all (pydantic's ValidationError)
        named_spec = None
    if named_spec != spec:
        return "the server's differential privacy is not the one the site approved"
    named = str(config.get(KEY_STRATEGY, ""))
    if problem := accounting_problem(spec, named):
        return problem
    if named != strategy:
        return f"the server runs strategy {named or 'unnamed'!r}, not the approved {strategy!r}"
    return None


class UpdateRefused(ValueError):
    """An update local DP cannot protect: an array that is not floating point, or not finite."""


def privatise(
    start: Mapping[str, np.ndarray],
    trained: Mapping[str, np.ndarray],
    spec: PrivacySpec,
    rng: np.random.Generator | None = None,
) -> dict[str, np.ndarray]:
    """Local DP at the site: the trained weights with the update (trained - start) clipped to
    the spec's norm C and Gaussian noise of standard deviation z*C added to every floating
    array; an array sent as integers (a batch counter) goes back as it was sent.

    UpdateRefused when the arrays are not the ones sent, or a floating array comes back as
    another type (its bytes could carry anything un-noised), changed shape, or holds NaN or
    inf. The noise comes from fresh OS entropy unless `rng` is given: noise a seed could
    replay could be subtracted.
    """
    if set(trained) != set(start):
        raise UpdateRefused("local DP: the trained model's arrays are not the ones sent")
    floating = [k for k in start if np.issubdtype(np.asarray(start[k]).dtype, np.floating)]
    for name in floating:
        values = np.asarray(trained[name])
        if values.dtype != np.asarray(start[name]).dtype:
            raise UpdateRefused(f"local DP: array {name} came back as {values.dtype}")
        if values.shape != np.shape(start[name]):
            raise UpdateRefused(f"local DP: array {name} changed shape in training")
        if not np.all(np.isfinite(values)):
            raise UpdateRefused(f"local DP: array {name} holds NaN or inf")
    rng = rng or np.random.default_rng()
    update = {k: np.asarray(trained[k], dtype=np.float64) - start[k] for k in floating}
    norm = math.sqrt(sum(float(np.sum(u * u)) for u in update.values()))
    scale = min(1.0, spec.clipping_norm / norm) if norm > 0 else 1.0
    sigma = spec.noise_multiplier * spec.clipping_norm
    noised = {
        k: (
            np.asarray(start[k], dtype=np.float64) + scale * u + rng.normal(0.0, sigma, u.shape)
        ).astype(np.asarray(start[k]).dtype)
        for k, u in update.items()
    }
    return {k: noised.get(k, np.array(start[k], copy=True)) for k in start}
