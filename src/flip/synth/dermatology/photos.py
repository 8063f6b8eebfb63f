"""Procedural skin photographs (224x224 RGB, numpy only), drawn a batch at a time.

Plaques cover the photographed region's involved area; their redness follows erythema,
their raised, shaded edge follows induration, and silvery flecks follow scaling. The skin
beneath takes the Fitzpatrick type's tone; the site's camera sets exposure, white balance,
vignetting, noise and framing. Eczema is drawn with softer edges and less scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flip.synth.dermatology.sites import Camera

SIZE = 224
#: Base skin tone (sRGB) of Fitzpatrick types I-VI.
SKIN_TONES = np.array(
    [
        [242, 213, 194],
        [228, 188, 160],
        [203, 156, 118],
        [165, 116, 80],
        [118, 80, 54],
        [74, 50, 36],
    ],
    dtype=float,
)
_RED = np.array([196.0, 40.0, 48.0])
_SCALE = np.array([236.0, 234.0, 226.0])
_DRAPE = np.array([70.0, 120.0, 150.0])


@dataclass(frozen=True)
class PhotoSpec:
    """What one photograph shows: skin type, diagnosis and the region's signs."""

    fitzpatrick: int
    eczema: bool
    area: float
    erythema: float
    induration: float
    scaling: float


def _upsampler(cells: int, size: int) -> np.ndarray:
    """(size, cells) linear interpolation weights from a coarse grid to `size` pixels."""
    at = np.linspace(0, cells - 1, size)
    low = np.floor(at).astype(int)
    high = np.minimum(low + 1, cells - 1)
    weights = np.zeros((size, cells), dtype=np.float32)
    weights[np.arange(size), low] += 1 - (at - low)
    weights[np.arange(size), high] += at - low
    return weights


def _smooth_noise(rng: np.random.Generator, n: int, cells: int, size: int = SIZE) -> np.ndarray:
    """(n, size, size) smooth noise: a coarse random grid, interpolated (two matrix products)."""
    grid = rng.standard_normal((n * cells, cells), dtype=np.float32)
    up = _upsampler(cells, size)
    rows = (grid @ up.T).reshape(n, cells, size).transpose(1, 0, 2).reshape(cells, n * size)
    return (up @ rows).reshape(size, n, size).transpose(1, 0, 2) / 0.8


def render(rng: np.random.Generator, specs: list[PhotoSpec], camera: Camera) -> np.ndarray:
    """(n, 224, 224, 3) uint8 photographs of `specs`, taken with the site's `camera`.

    Each pixel is a mix of four colours (skin, inflamed skin, scale, drape) plus relief
    and noise: single-channel weight maps, combined with the colours in one matrix product.
    """
    n = len(specs)
    values = np.array(
        [(s.fitzpatrick, s.eczema, s.area, s.erythema, s.induration, s.scaling) for s in specs],
        dtype=np.float32,
    ).reshape(n, 6)
    fitz, eczema = values[:, 0].astype(int), values[:, 1]
    area, ery, ind, scl = values[:, 2] / 100, values[:, 3] / 4, values[:, 4] / 4, values[:, 5] / 4
    tone = (SKIN_TONES[fitz - 1] * rng.normal(1, 0.04, (n, 1))).astype(np.float32)
    darkness = (fitz - 1) / 5
    red = _RED * (1 - 0.55 * darkness[:, None]) + tone * 0.35 * darkness[:, None]

    cells = max(4, round(10 / camera.zoom))
    field = _smooth_noise(rng, n, cells) + 0.35 * _smooth_noise(rng, n, 24)
    sample = np.sort(field[:, ::7, ::7].reshape(n, -1), axis=1)
    rank = np.clip(((1 - area) * (sample.shape[1] - 1)).astype(int), 0, sample.shape[1] - 1)
    threshold = sample[np.arange(n), rank]
    edge = field.std(axis=(1, 2)) * (0.04 + 0.25 * (1 - ind) + 0.2 * eczema)
    inside = np.clip((field - _col(threshold)) / _col(edge) + 0.5, 0, 1)
    inside *= _col(area > 0.002)
    redness = _col(0.15 + 0.75 * ery) * inside
    gy, gx = np.gradient(inside, axis=(1, 2))
    relief = (gx - gy) * _col(ind * 60 * SIZE / 64 * 5 * (1 - 0.5 * darkness))
    flecks = _smooth_noise(rng, n, 56) + 0.6 * rng.standard_normal(inside.shape, dtype=np.float32)
    density = scl * (1 - 0.6 * eczema)
    scale = np.clip((flecks - _col(1.2 - 1.1 * density)) * 2.5, 0, 1) * inside
    scale *= _col(0.85 * (density > 0.02))
    texture = 1 + 0.03 * _smooth_noise(rng, n, 40) + 0.04 * _smooth_noise(rng, n, 8)

    light, drape = _lighting(rng, n, camera)
    kept = (1 - scale) * (1 - drape) * light
    weights = np.stack(
        [
            texture * (1 - redness) * kept,
            redness * kept,
            scale * (1 - drape) * light,
            drape * light,
            relief * (1 - drape) * light
            + camera.noise * rng.standard_normal(inside.shape, dtype=np.float32),
        ],
        axis=-1,
    ).reshape(n, SIZE * SIZE, 5)
    balance = np.array(camera.white_balance) * rng.normal(1, 0.02, (n, 3))
    colours = (
        np.stack(
            [
                tone,
                red,
                np.broadcast_to(_SCALE, (n, 3)),
                np.broadcast_to(_DRAPE, (n, 3)),
                np.ones((n, 3)),
            ],
            axis=1,
        )
        * balance[:, None, :]
    )
    image = weights @ colours.astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8).reshape(n, SIZE, SIZE, 3)


def _col(values: np.ndarray) -> np.ndarray:
    """Per-image values shaped to broadcast over (n, rows, cols)."""
    return np.asarray(values, dtype=np.float32)[:, None, None]


def _lighting(rng: np.random.Generator, n: int, camera: Camera) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel light (a directional gradient, vignetting, exposure) and the drape's mask."""
    y, x = (np.mgrid[0:SIZE, 0:SIZE] / (SIZE - 1) * 2 - 1).astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi, n)
    exposure = camera.gain * rng.normal(1, 0.05, n)
    light = 1 + 0.12 * (_col(np.cos(angle)) * x + _col(np.sin(angle)) * y)
    light *= (1 - camera.vignette * (x**2 + y**2) / 2) * _col(exposure)
    edge = np.where(rng.random(n) < camera.drape, rng.uniform(0.75, 0.95, n), 2.0)
    drape = (x + 0.15 * np.sin(3 * y + _col(angle))) > _col(edge)
    return light, drape.astype(np.float32)
