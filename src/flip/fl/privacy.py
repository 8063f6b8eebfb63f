"""Differential privacy: Flower's clipping-and-noise wrappers, and the budget they spend.

Noise is calibrated to one site's whole update (site-level DP): each round is a
Gaussian mechanism with noise multiplier z on updates clipped to norm C. The
budget (epsilon at a given delta) over all rounds comes from the RDP accountant
of Google's dp-accounting library, with the rate at which sites are sampled.

Clipping is fixed (C throughout) or adaptive (Andrew et al., 2021, "Differentially
private learning with adaptive clipping"): each round C moves geometrically toward
a target quantile of the sites' update norms, estimated from a noisy count of the
sites whose update was clipped. Flower splits z between the update noise and the
count noise so that, together, a round is still a Gaussian mechanism of multiplier
z: the accountant's budget is the same as with fixed clipping. Flower 1.41's
adaptive wrappers count the clipped updates but step the norm by the paper's rule
for unclipped ones, so the norm runs away from the target (all clipped: it
shrinks); FLIP's subclasses step it the paper's way.
"""

from __future__ import annotations

import math
from typing import Literal

from flwr.app import Context, Message, MessageType
from flwr.clientapp.mod import adaptiveclipping_mod, fixedclipping_mod
from flwr.clientapp.typing import ClientAppCallable
from flwr.serverapp.strategy import (
    DifferentialPrivacyClientSideAdaptiveClipping,
    DifferentialPrivacyClientSideFixedClipping,
    DifferentialPrivacyServerSideAdaptiveClipping,
    DifferentialPrivacyServerSideFixedClipping,
    Strategy,
)
from flwr.supercore.differential_privacy import KEY_CLIPPING_NORM
from pydantic import BaseModel, ConfigDict, Field


class PrivacySpec(BaseModel):
    """How updates are clipped and noised."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    clipping: Literal["server", "client"] = "server"
    noise_multiplier: float = Field(gt=0)
    clipping_norm: float = Field(gt=0, description="The norm, or with `adaptive` its start.")
    delta: float = Field(1e-5, gt=0, lt=1)
    adaptive: bool = Field(
        False, description="Adapt the clipping norm each round toward `target_quantile`."
    )
    target_quantile: float = Field(
        0.5, gt=0, lt=1, description="Adaptive: the share of sites whose update goes unclipped."
    )
    clip_norm_lr: float = Field(0.2, gt=0, description="Adaptive: the norm's step size.")

    def epsilon(self, rounds: int, sampling_rate: float = 1.0) -> float:
        """The epsilon spent by `rounds` rounds at this spec's delta (RDP accountant)."""
        from dp_accounting import dp_event  # 0.7 s to import: sites never need it
        from dp_accounting.rdp import rdp_privacy_accountant

        gaussian = dp_event.GaussianDpEvent(self.noise_multiplier)
        step = (
            gaussian
            if sampling_rate >= 1
            else dp_event.PoissonSampledDpEvent(sampling_rate, gaussian)
        )
        accountant = rdp_privacy_accountant.RdpAccountant()
        accountant.compose(dp_event.SelfComposedDpEvent(step, rounds))
        return float(accountant.get_epsilon(self.delta))

    def budget(self, rounds: int, sampling_rate: float = 1.0) -> dict[str, object]:
        """A JSON-ready report of the mechanism and the budget spent."""
        return {
            "mechanism": "gaussian, site-level",
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
            "epsilon": round(self.epsilon(rounds, sampling_rate), 4),
            "accountant": "RDP (dp-accounting)",
        }


class _TowardTheQuantile:
    """Step the clipping norm as Andrew et al. do: up when more than the target share of
    updates was clipped, down when fewer."""

    clipping_norm: float
    clip_norm_lr: float
    target_clipped_quantile: float

    def _geometric_update(self, clipped_fraction: float) -> None:
        step = self.clip_norm_lr * (clipped_fraction - self.target_clipped_quantile)
        self.clipping_norm *= math.exp(step)


class ServerSideAdaptiveClipping(_TowardTheQuantile, DifferentialPrivacyServerSideAdaptiveClipping):
    """Flower's server-side adaptive clipping, its norm stepped toward the target."""


class ClientSideAdaptiveClipping(_TowardTheQuantile, DifferentialPrivacyClientSideAdaptiveClipping):
    """Flower's client-side adaptive clipping, its norm stepped toward the target."""


#: Set in the config of runs with client-side adaptive clipping: the mod to clip with.
KEY_ADAPTIVE = "flip-adaptive-clipping"


def count_noise(spec: PrivacySpec, n_sites: int) -> float:
    """The standard deviation of the noise on adaptive clipping's count of clipped sites:
    Flower's sites / 20, raised to z where that is too small for Flower's split of z
    (then the update's own noise grows by 1 / sqrt(0.75), about 15%)."""
    return max(n_sites / 20, spec.noise_multiplier)


def with_privacy(strategy: Strategy, spec: PrivacySpec, n_sites: int) -> Strategy:
    """Wrap a strategy in Flower's DP strategy of the spec's side and clipping."""
    if spec.adaptive:
        adaptive = (
            ServerSideAdaptiveClipping if spec.clipping == "server" else ClientSideAdaptiveClipping
        )
        return adaptive(
            strategy,
            noise_multiplier=spec.noise_multiplier,
            num_sampled_clients=n_sites,
            initial_clipping_norm=spec.clipping_norm,
            target_clipped_quantile=1 - spec.target_quantile,
            clip_norm_lr=spec.clip_norm_lr,
            clipped_count_stddev=count_noise(spec, n_sites),
        )
    fixed = (
        DifferentialPrivacyServerSideFixedClipping
        if spec.clipping == "server"
        else DifferentialPrivacyClientSideFixedClipping
    )
    return fixed(
        strategy,
        noise_multiplier=spec.noise_multiplier,
        clipping_norm=spec.clipping_norm,
        num_sampled_clients=n_sites,
    )


def privacy_config(spec: PrivacySpec | None) -> dict[str, bool]:
    """What the sites' config must add for the spec: whether they clip adaptively."""
    if spec is not None and spec.clipping == "client" and spec.adaptive:
        return {KEY_ADAPTIVE: True}
    return {}


def clip_when_asked(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """A ClientApp mod: Flower's client-side clipping (adaptive when the config says so),
    on train messages that ask for it."""
    if msg.metadata.message_type != MessageType.TRAIN:
        return call_next(msg, context)
    config = next(iter(msg.content.config_records.values()), None)
    if config is not None and KEY_CLIPPING_NORM in config:
        mod = adaptiveclipping_mod if config.get(KEY_ADAPTIVE) else fixedclipping_mod
        return mod(msg, context, call_next)
    return call_next(msg, context)
