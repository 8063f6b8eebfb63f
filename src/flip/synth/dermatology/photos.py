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
    """(n, 224, 224, 3) uint8 photographs of `specs`, taken with the site's `camera`."""
    n = len(specs)
    values = np.array(
        [(s.fitzpatrick, s.eczema, s.area, s.erythema, s.induration, s.scaling) for s in specs],
        dtype=np.float32,
    ).reshape(n, 6)
    fitz, eczema = values[:, 0].astype(int), values[:, 1]
    area, ery, ind, scl = values[:, 2] / 100, values[:, 3] / 4, values[:, 4] / 4, values[:, 5] / 4
    zoom = camera.zoom * rng.uniform(0.9, 1.1, n)
    tone = (SKIN_TONES[fitz - 1] * rng.normal(1, 0.04, (n, 1))).astype(np.float32)
    texture = 0.03 * _smooth_noise(rng, n, 40) + 0.04 * _smooth_noise(rng, n, 8)
    image = tone[:, None, None, :] * (1 + texture[..., None])

    field = _smooth_noise(rng, n, max(4, int(10 / zoom.mean()))) + 0.35 * _smooth_noise(rng, n, 24)
    sample = np.sort(field[:, ::7, ::7].reshape(n, -1), axis=1)
    rank = np.clip(((1 - area) * (sample.shape[1] - 1)).astype(int), 0, sample.shape[1] - 1)
    threshold = sample[np.arange(n), rank]
    edge = field.std(axis=(1, 2)) * (0.04 + 0.25 * (1 - ind) + 0.2 * eczema)
    inside = np.clip((field - _col(threshold)) / _col(edge) + 0.5, 0, 1)
    inside *= _col(area > 0.002)

    darkness = (fitz - 1) / 5
    red = _RED * (1 - 0.55 * darkness[:, None]) + tone * 0.35 * darkness[:, None]
    redness = (_col(0.15 + 0.75 * ery) * inside)[..., None]
    image = image * (1 - redness) + red[:, None, None, :].astype(np.float32) * redness

    gy, gx = np.gradient(inside, axis=(1, 2))
    relief = (gx - gy) * _col(ind * 60 * SIZE / 64 * 5 * (1 - 0.5 * darkness))
    image += relief[..., None]

    flecks = _smooth_noise(rng, n, 56) + 0.6 * rng.standard_normal(inside.shape, dtype=np.float32)
    density = scl * (1 - 0.6 * eczema)
    scale = np.clip((flecks - _col(1.2 - 1.1 * density)) * 2.5, 0, 1) * inside
    scale *= _col(density > 0.02)
    image = (
        image * (1 - 0.85 * scale[..., None]) + _SCALE.astype(np.float32) * 0.85 * scale[..., None]
    )
    return _camera(rng, image, camera)


def _col(values: np.ndarray) -> np.ndarray:
    """Per-image values shaped to broadcast over (n, rows, cols)."""
    return np.asarray(values, dtype=np.float32)[:, None, None]


def _camera(rng: np.random.Generator, image: np.ndarray, camera: Camera) -> np.ndarray:
    """Lighting, white balance, vignetting, a drape at the edge and sensor noise."""
    n = image.shape[0]
    y, x = (np.mgrid[0:SIZE, 0:SIZE] / (SIZE - 1) * 2 - 1).astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi, n)
    light = 1 + 0.12 * (_col(np.cos(angle)) * x + _col(np.sin(angle)) * y)
    vignette = 1 - camera.vignette * (x**2 + y**2) / 2
    exposure = camera.gain * rng.normal(1, 0.05, n)
    balance = np.array(camera.white_balance) * rng.normal(1, 0.02, (n, 3))
    image *= (light * vignette * _col(exposure))[..., None]
    image *= balance[:, None, None, :].astype(np.float32)
    drape = rng.random(n) < camera.drape
    edge = np.where(drape, rng.uniform(0.75, 0.95, n), 2.0)
    mask = (x[None] + 0.15 * np.sin(3 * y[None] + _col(angle))) > _col(edge)
    image[mask] = _DRAPE * camera.gain
    image += camera.noise * rng.standard_normal(image.shape, dtype=np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)
