"""What a task asks of a pretrained encoder: which weights (a site-side name and their
SHA-256) and the low-rank adapter (LoRA) that fine-tunes it while the weights stay frozen."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Weights(BaseModel):
    """Pretrained weights the site holds: its registered name and their SHA-256."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class AdapterSpec(BaseModel):
    """LoRA on a pretrained encoder: only the adapters and the head train and travel. Its
    targets are fixed by the encoder, and an option FLIP does not apply (`modules_to_save`,
    `target_modules`, ...) is refused rather than ignored."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: Literal["lora"] = "lora"
    rank: int = Field(8, ge=1, le=256, description="LoRA rank r.")
    alpha: float = Field(16.0, gt=0, le=4096, description="LoRA scaling alpha (scale alpha / r).")
    weights: Weights = Field(description="The frozen encoder's weights at each site.")
