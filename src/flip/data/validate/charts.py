"""Charts for the data report as inline SVG (matplotlib, no pyplot state, no external files)."""

from __future__ import annotations

import io
from typing import Any

from matplotlib import rc_context
from matplotlib.figure import Figure

_STYLE = {"svg.fonttype": "none", "font.size": 9, "svg.hashsalt": "flip"}
_COLOURS = {
    "loaded": "#1a7f37",
    "unchanged": "#8c959f",
    "quarantined": "#cf222e",
    "skipped": "#9a6700",
}


def _svg(figure: Figure) -> str:
    """The figure as an `<svg>` element, without the XML prolog and DOCTYPE."""
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def source_counts_svg(sources: list[dict[str, Any]]) -> str:
    """Stacked horizontal bars: each source's loaded, unchanged, quarantined and skipped records."""
    with rc_context(_STYLE):
        figure = Figure(figsize=(7, 0.45 * len(sources) + 1))
        ax = figure.subplots()
        names = [s["source"][-50:] for s in sources]
        left = [0] * len(sources)
        for part, colour in _COLOURS.items():
            values = [s[part] for s in sources]
            ax.barh(names, values, left=left, color=colour, label=part)
            left = [a + b for a, b in zip(left, values, strict=True)]
        ax.invert_yaxis()
        ax.set_xlabel("records (latest run of each source)")
        ax.legend(loc="lower right", frameon=False)
        return _svg(figure)


def unit_coverage_svg(by_concept: list[dict[str, Any]]) -> str:
    """Horizontal bars: the share of each concept's numeric rows that has a unit concept."""
    shown = [c for c in by_concept if c["share"] is not None]
    with rc_context(_STYLE):
        figure = Figure(figsize=(7, 0.3 * len(shown) + 1))
        ax = figure.subplots()
        ax.barh([c["concept_name"][:45] for c in shown], [100 * c["share"] for c in shown])
        ax.invert_yaxis()
        ax.set_xlim(0, 100)
        ax.set_xlabel("% of numeric rows with a unit concept")
        return _svg(figure)


def distributions_svg(distributions: list[dict[str, Any]]) -> str:
    """Box plots (Tukey whiskers, outliers as points) of each concept's values."""
    with rc_context(_STYLE):
        figure = Figure(figsize=(7, 0.45 * len(distributions) + 1))
        ax = figure.subplots()
        stats = [
            {
                "label": f"{d['concept_name'][:35]} ({d['unit'][:12]})",
                "med": d["median"],
                "q1": d["q1"],
                "q3": d["q3"],
                "whislo": d["whisker_low"],
                "whishi": d["whisker_high"],
                "fliers": d["outlier_samples"],
            }
            for d in distributions
        ]
        ax.bxp(stats, orientation="horizontal", showfliers=True)
        ax.invert_yaxis()
        ax.set_xscale("symlog")
        ax.set_xlabel("value_as_number (symmetric log scale)")
        return _svg(figure)
