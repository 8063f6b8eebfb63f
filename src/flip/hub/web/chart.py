"""A line chart of a run's per-round metrics as inline SVG (no script, no inline style)."""

from __future__ import annotations

from html import escape

WIDTH, HEIGHT, PAD = 640, 240, 36
#: Line colours with at least 3:1 contrast on white.
COLOURS = ("#1f5fa8", "#b3421b", "#2a7a3b", "#7a3fa0", "#8a6d00")


def metric_names(rounds: list[dict[str, float]]) -> list[str]:
    """Every numeric metric any round reported, sorted."""
    return sorted({k for r in rounds for k, v in r.items() if isinstance(v, int | float)})


def rounds_svg(rounds: list[dict[str, float]]) -> str:
    """The metrics of each round as lines over the round number; an empty string if none."""
    names = metric_names(rounds)
    if not rounds or not names:
        return ""
    values = [r[n] for r in rounds for n in names if isinstance(r.get(n), int | float)]
    low, high = min(values), max(values)
    if high == low:
        low, high = low - 0.5, high + 0.5
    span_x = max(len(rounds) - 1, 1)

    def x(i: int) -> float:
        return PAD + (WIDTH - 2 * PAD) * i / span_x

    def y(v: float) -> float:
        return HEIGHT - PAD - (HEIGHT - 2 * PAD) * (v - low) / (high - low)

    parts = [
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" role="img" '
        f'aria-label="Metrics per round: {escape(", ".join(names))}" class="chart">',
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" '
        'stroke="#555" stroke-width="1"/>',
        f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{HEIGHT - PAD}" '
        'stroke="#555" stroke-width="1"/>',
        f'<text x="{PAD - 4}" y="{PAD + 4}" text-anchor="end" font-size="11" fill="#222">'
        f"{high:.3g}</text>",
        f'<text x="{PAD - 4}" y="{HEIGHT - PAD}" text-anchor="end" font-size="11" fill="#222">'
        f"{low:.3g}</text>",
        f'<text x="{WIDTH / 2}" y="{HEIGHT - 6}" text-anchor="middle" font-size="11" '
        f'fill="#222">rounds 1 to {len(rounds)}</text>',
    ]
    for k, name in enumerate(names):
        colour = COLOURS[k % len(COLOURS)]
        points = [
            f"{x(i):.1f},{y(r[name]):.1f}"
            for i, r in enumerate(rounds)
            if isinstance(r.get(name), int | float)
        ]
        parts.append(
            f'<polyline points="{" ".join(points)}" fill="none" stroke="{colour}" '
            'stroke-width="2"/>'
        )
        parts.append(
            f'<text x="{PAD + 8 + 130 * k}" y="16" font-size="12" fill="{colour}">'
            f"{escape(name)}</text>"
        )
    parts.append("</svg>")
    return "\n".join(parts)
