"""The packaged all-MiniLM-L6-v2 embeds notes offline; the hashed words stay the fallback."""

from __future__ import annotations

import numpy as np
import pytest

from flip.data.features.encoder import MINILM_DIMS, minilm_installed
from flip.data.features.text import TextSpec, embed_notes, width


def test_hashed_fallback_deidentifies_before_embedding():
    spec = TextSpec(dims=64)
    named = embed_notes(["Re: Mr J. Smith, psoriasis"], spec)
    other = embed_notes(["Re: Mrs K. Jones, psoriasis"], spec)
    assert width(spec) == 64 and named.shape == (1, 64)
    assert np.array_equal(named, other)


@pytest.mark.slow
@pytest.mark.skipif(not minilm_installed(), reason="the nlp extra is not installed")
def test_minilm_embeds_offline_and_places_like_notes_near(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = TextSpec(encoder="minilm")
    v = embed_notes(
        ["Psoriatic arthritis in both knees.", "Known PsA with joint pain.", "Atopic eczema.", ""],
        spec,
    )
    assert width(spec) == MINILM_DIMS and v.shape == (4, MINILM_DIMS)
    assert np.allclose(np.linalg.norm(v[:3], axis=1), 1, atol=1e-4)
    assert not v[3].any()
    assert v[0] @ v[1] > v[0] @ v[2]
