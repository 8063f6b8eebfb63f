"""The dermatology task the sites approve: cohort, inputs, models and training, as one
hashable document, and the SHA-256 a site admin approves (its JSON and the code that reads
the site's rows and trains)."""

from __future__ import annotations

import hashlib
import importlib
import inspect
from typing import Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from flip.data.features.adapter import Weights
from flip.data.features.text import TextSpec, width
from flip.fl.tasks.dermatology_training import Recipe

Model = Literal["biomarker", "response"]

#: The modules a site runs for the task: their source is part of its hash.
CODE = (
    "flip.data.features.dermatology",
    "flip.data.features.text",
    "flip.fl.tasks.adapters",
    "flip.fl.tasks.dermatology",
    "flip.fl.tasks.dermatology_data",
    "flip.fl.tasks.dermatology_training",
    "flip.fl.dermatology_client",
)


class DermatologyTask(BaseModel):
    """The biomarker (PASI from a photograph) and the response (PASI75 at week 16) models."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    name: str = Field(min_length=1, max_length=200)
    cohort: str
    features: tuple[str, ...]
    text: TextSpec = Field(description="How letters enter: MiniLM token ids for LoRA, or hashed.")
    image_size: int = Field(64, ge=16, le=512, description="Photographs are read at this size.")
    image_weights: Weights | None = Field(
        None,
        description="Pretrained weights of the photograph network each site holds (its "
        "registered name and SHA-256); None: it starts from the task's seed.",
    )
    rounds: int = Field(ge=1, le=200)
    local_epochs: int = Field(ge=1, le=100)
    seed: int = 0
    test_fraction: float = Field(0.3, gt=0, lt=1)
    learning_rate: float = Field(2e-3, gt=0)
    batch_size: int = Field(
        8,
        ge=1,
        description="Rows a step: a small site's few photographs still make several steps "
        "an epoch (its 10 training photographs at --size default, 1 step in batches of 16).",
    )

    def sha256(self) -> str:
        """SHA-256 over the task's canonical JSON and the source of the code it runs."""
        digest = hashlib.sha256(
            orjson.dumps(self.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
        )
        for name in CODE:
            digest.update(b"\0" + inspect.getsource(importlib.import_module(name)).encode())
        return digest.hexdigest()

    def recipe(self, model: Model) -> Recipe:
        """What `model` reads and how it trains."""
        if model == "biomarker":
            n_features, n_text = 6, 0  # the photograph and the skin type
        else:
            n_features, n_text = len(self.features), width(self.text)
        return Recipe(
            model,
            n_features,
            n_text,
            True,
            self.seed,
            learning_rate=self.learning_rate,
            batch_size=self.batch_size,
            local_epochs=self.local_epochs,
            rounds=self.rounds,
        )
