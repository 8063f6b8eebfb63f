"""Differential privacy: Flower's clipping-and-noise wrappers, and the budget they spend.

Noise is calibrated to one site's whole update (site-level DP): each round is a
Gaussian mechanism with noise multiplier z on updates clipped to norm C. The
budget (epsilon at a given delta) over all rounds comes from the RDP accountant
of Google's dp-accounting library, with the rate at which sites are sampled.
"""

from __future__ import annotations

from typing import Literal

from dp_accounting import dp_event
from dp_accounting.rdp import rdp_privacy_accountant
from flwr.app import Context, Message, MessageType
from flwr.clientapp.mod import fixedclipping_mod
from flwr.clientapp.typing import ClientAppCallable
from flwr.serverapp.strategy import (
    DifferentialPrivacyClientSideFixedClipping,
    DifferentialPrivacyServerSideFixedClipping,
    Strategy,
)
from flwr.supercore.differential_privacy import KEY_CLIPPING_NORM
from pydantic import BaseModel, ConfigDict, Field


class PrivacySpec(BaseModel):
    """How updates are clipped and noised."""

    model_config = ConfigDict(frozen=True)

    clipping: Literal["server", "client"] = "server"
    noise_multiplier: float = Field(gt=0)
    clipping_norm: float = Field(gt=0)
    delta: float = Field(1e-5, gt=0, lt=1)

    def epsilon(self, rounds: int, sampling_rate: float = 1.0) -> float:
        """The epsilon spent by `rounds` rounds at this spec's delta (RDP accountant)."""
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
            "clipping": f"{self.clipping}-side fixed",
            "noise_multiplier": self.noise_multiplier,
            "clipping_norm": self.clipping_norm,
            "rounds": rounds,
            "sampling_rate": sampling_rate,
            "delta": self.delta,
            "epsilon": round(self.epsilon(rounds, sampling_rate), 4),
            "accountant": "RDP (dp-accounting)",
        }


def with_privacy(strategy: Strategy, spec: PrivacySpec, n_sites: int) -> Strategy:
    """Wrap a strategy in Flower's fixed-clipping DP strategy."""
    wrapper = (
        DifferentialPrivacyServerSideFixedClipping
        if spec.clipping == "server"
        else DifferentialPrivacyClientSideFixedClipping
    )
    return wrapper(
        strategy,
        noise_multiplier=spec.noise_multiplier,
        clipping_norm=spec.clipping_norm,
        num_sampled_clients=n_sites,
    )


def clip_when_asked(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """A ClientApp mod: Flower's client-side fixed clipping, on train messages that ask for it."""
    config = next(iter(msg.content.config_records.values()), None)
    if (
        msg.metadata.message_type == MessageType.TRAIN
        and config is not None
        and KEY_CLIPPING_NORM in config
    ):
        return fixedclipping_mod(msg, context, call_next)
    return call_next(msg, context)
