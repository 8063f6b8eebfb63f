"""Note embeddings computed at the site: hashed words and word pairs, no model to download.

Each note becomes a fixed-length 0/1 vector: every word and every pair of
adjacent words sets one of `dims` slots, chosen by a CRC-32 of the text, so
every site embeds alike without sharing a vocabulary ("non smoker" and
"smoker" set different slots; so do "denies chest" and "chest pain").
"""

from __future__ import annotations

import re
import zlib
from itertools import pairwise
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field, model_validator

from flip.data.features.adapter import AdapterSpec

_WORD = re.compile(r"[a-z]+")


class TextSpec(BaseModel):
    """Which notes feed a task and how large their embedding is."""

    dims: int = Field(
        512, ge=8, le=65536, description="Length of each hashed note embedding (hashed only)."
    )
    encoder: Literal["hashed", "minilm"] = Field(
        "hashed",
        description="hashed words (no dependency) or the packaged all-MiniLM-L6-v2 (384 long, "
        "the nlp extra); every site of a task must use the same one.",
    )
    lookback_days: int = Field(365, ge=0, description="Notes this many days before entry count.")
    adapter: AdapterSpec | None = Field(
        None,
        description="Fine-tune the minilm encoder with LoRA: notes become token ids (max_tokens "
        "columns) and the encoder runs in the model, its weights frozen at each site.",
    )
    max_tokens: int = Field(
        64, ge=8, le=512, description="Tokens kept of each note (with an adapter only)."
    )

    @model_validator(mode="after")
    def _adapter_tunes_minilm(self) -> TextSpec:
        if self.adapter is not None and self.encoder != "minilm":
            raise ValueError("text.adapter fine-tunes a pretrained encoder: set encoder: minilm")
        return self


def grams(text: str) -> list[str]:
    """The words of `text`, lower-cased, followed by each pair of adjacent words."""
    words = _WORD.findall(text.lower())
    return words + [f"{a} {b}" for a, b in pairwise(words)]


def embed(texts: list[str], dims: int) -> np.ndarray:
    """One row per text: 1.0 in the slot of each of its words and word pairs."""
    out = np.zeros((len(texts), dims), dtype=np.float32)
    for row, text in enumerate(texts):
        for gram in grams(text):
            out[row, zlib.crc32(gram.encode()) % dims] = 1.0
    return out


def width(spec: TextSpec) -> int:
    """Columns of one note embedding under `spec`."""
    from flip.data.features.encoder import MINILM_DIMS

    if spec.adapter is not None:
        return spec.max_tokens
    return MINILM_DIMS if spec.encoder == "minilm" else spec.dims


def embed_notes(texts: list[str], spec: TextSpec) -> np.ndarray:
    """De-identify each note, then embed it with the spec's encoder (with an adapter: its
    MiniLM token ids, which the model's encoder embeds)."""
    from flip.data.features.encoder import encode_minilm, tokenize_minilm
    from flip.data.notes.deid import deidentify

    clean = [deidentify(t) for t in texts]
    if spec.adapter is not None:
        return tokenize_minilm(clean, spec.max_tokens)
    return encode_minilm(clean) if spec.encoder == "minilm" else embed(clean, spec.dims)
