"""The hospitals of the dermatology world: size, case mix, skin-type mix, camera and export."""

from __future__ import annotations

from dataclasses import dataclass

#: How many people each of the four default sites holds, per world size.
SIZES = {
    "small": (120, 80, 60, 30),
    "default": (400, 260, 170, 80),
    "large": (1600, 1000, 640, 300),
}
EXPORTS = ("fhir", "hl7v2", "warehouse")


@dataclass(frozen=True)
class Camera:
    """How a site's photographs come out: exposure, white balance, vignetting, sensor noise,
    framing (zoom > 1 crops closer) and how often a drape shows at the edge."""

    gain: float
    white_balance: tuple[float, float, float]
    vignette: float
    noise: float
    zoom: float
    drape: float
    jpeg_quality: int = 90


@dataclass(frozen=True)
class SiteSpec:
    """One hospital of the world."""

    name: str
    export: str
    n_persons: int
    case_mix: tuple[float, float, float]
    fitzpatrick: tuple[float, float, float, float, float, float]
    camera: Camera
    age_mean: float = 46.0
    bmi_mean: float = 29.0
    smoker_rate: float = 0.22
    prior_biologic_rate: float = 0.25


_TEMPLATES = (
    SiteSpec(
        "st-aster",
        "fhir",
        0,
        (0.6, 0.3, 0.1),
        (0.2, 0.35, 0.25, 0.1, 0.06, 0.04),
        Camera(1.0, (1.0, 1.0, 1.0), 0.15, 3.0, 1.0, 0.2),
    ),
    SiteSpec(
        "northbridge",
        "hl7v2",
        0,
        (0.5, 0.4, 0.1),
        (0.05, 0.15, 0.25, 0.25, 0.18, 0.12),
        Camera(0.9, (1.08, 1.0, 0.88), 0.3, 5.0, 0.9, 0.4),
        age_mean=42.0,
        bmi_mean=30.5,
    ),
    SiteSpec(
        "riverside",
        "warehouse",
        0,
        (0.7, 0.2, 0.1),
        (0.1, 0.3, 0.3, 0.15, 0.1, 0.05),
        Camera(1.1, (0.92, 1.0, 1.1), 0.1, 2.0, 1.25, 0.0, 85),
        age_mean=51.0,
        bmi_mean=28.0,
        prior_biologic_rate=0.35,
    ),
    SiteSpec(
        "eastgate",
        "fhir",
        0,
        (0.4, 0.45, 0.15),
        (0.02, 0.08, 0.15, 0.25, 0.25, 0.25),
        Camera(0.95, (1.04, 0.98, 0.95), 0.4, 8.0, 1.1, 0.3),
        age_mean=39.0,
        bmi_mean=30.0,
        smoker_rate=0.3,
        prior_biologic_rate=0.15,
    ),
)


def default_sites(n_sites: int, size: str = "default") -> list[SiteSpec]:
    """The world's sites: the first four as described in docs, any further ones cycling
    through their kinds at the smallest site's size."""
    if n_sites < 1:
        raise ValueError("a dermatology world needs at least one site")
    if size not in SIZES:
        raise ValueError(f"--size must be one of {', '.join(SIZES)}, not {size!r}")
    counts = SIZES[size]
    sites = []
    for i in range(n_sites):
        template = _TEMPLATES[i % len(_TEMPLATES)]
        name = template.name if i < len(_TEMPLATES) else f"{template.name}-{i + 1}"
        n = counts[i] if i < len(counts) else counts[-1]
        sites.append(SiteSpec(**{**template.__dict__, "name": name, "n_persons": n}))
    return sites
