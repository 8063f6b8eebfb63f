"""Charts as inline SVG (no script, no inline style): a run's per-round metrics as lines, a
query's combined breakdown as bars."""

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


#: A bar chart's rows: height of each, and the width of the label column.
BAR, LABEL = 22, 90


def bars_svg(title: str, bins: dict[str, int | None]) -> str:
    """A bin's count as a horizontal bar, each labelled; a withheld bin (None) is an outlined
    box saying so, never a bar of 0. An empty string for no bins."""
    if not bins:
        return ""
    shown = [n for n in bins.values() if n is not None]
    top = max(shown, default=0) or 1
    span = WIDTH - LABEL - 2 * PAD
    height = BAR * len(bins) + 8
    parts = [
        f'<svg viewBox="0 0 {WIDTH} {height}" width="100%" role="img" '
        f'aria-label="{escape(title)}: '
        + escape(", ".join(f"{b} {'withheld' if n is None else n}" for b, n in bins.items()))
        + '" class="chart bars">'
    ]
    for i, (name, n) in enumerate(bins.items()):
        y = 4 + BAR * i
        parts.append(
            f'<text x="{LABEL - 6}" y="{y + 15}" text-anchor="end" font-size="12" fill="#222">'
            f"{escape(name)}</text>"
        )
        if n is None:
            parts.append(
                f'<rect x="{LABEL}" y="{y + 2}" width="{span}" height="{BAR - 6}" fill="none" '
                'stroke="#555" stroke-dasharray="4 3"/>'
            )
            label, at = "withheld", LABEL + 8
        else:
            width = span * n / top
            parts.append(
                f'<rect x="{LABEL}" y="{y + 2}" width="{width:.1f}" height="{BAR - 6}" '
                f'fill="{COLOURS[0]}"/>'
            )
            label, at = str(n), LABEL + width + 6
        parts.append(f'<text x="{at:.1f}" y="{y + 15}" font-size="12" fill="#222">{label}</text>')
    parts.append("</svg>")
    return "\n".join(parts)
