"""A forest plot of paired comparisons: each variant's difference from the baseline with its interval.

A grid of panels, one per metric, one row per variant; the point is ``variant - baseline``,
the bar its interval (the verdict's test's, at the family's level), the colour
the corrected verdict. Drawn with
matplotlib's Agg backend, so it needs no display.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from wtb_prefect.analysis.paired import PairedComparison, interval_label

__all__ = ["VERDICT_COLOURS", "forest_plot"]

VERDICT_COLOURS = {
    "better": "#1a9850",
    "worse": "#d73027",
    "no detectable difference": "#4575b4",
    "too few cases": "#9e9e9e",
}

_WIDTH_IN = 9.0  # at the saved 100 dpi: 900 px, a laptop window's width, so no text is scaled down to fit
_DPI = 100


def _columns(metrics: int) -> int:
    """Panels per row: two, three from five metrics on, so each panel keeps room for its axis."""
    return 1 if metrics == 1 else (2 if metrics <= 4 else 3)


def forest_plot(comparisons: Sequence[PairedComparison], path: str | Path, title: str | None = None) -> Path:
    """Draw ``comparisons`` as a forest plot and save it as a PNG at ``path``.

    A grid of panels (one per metric, two or three a row) 900 px wide, one row
    per variant, each point and interval coloured by its verdict, every label
    inside the frame.

    Returns:
        The path written (parent folders are created).

    Raises:
        ValueError: no comparisons to draw.
    """
    if not comparisons:
        raise ValueError("forest_plot needs at least one comparison")
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    metrics = list(dict.fromkeys(c.metric for c in comparisons))
    variants = list(dict.fromkeys(c.variant for c in comparisons))
    ncols = _columns(len(metrics))
    nrows = -(-len(metrics) // ncols)
    panel_h = 0.9 + 0.4 * len(variants)
    figure = Figure(figsize=(_WIDTH_IN, 0.9 + panel_h * nrows), layout="constrained")
    axes = figure.subplots(nrows, ncols, sharey=True, squeeze=False).ravel()
    rows = {v: len(variants) - 1 - i for i, v in enumerate(variants)}
    for axis, metric in zip(axes, metrics, strict=False):
        direction = "higher is better"
        for c in (c for c in comparisons if c.metric == metric):
            direction = "higher is better" if c.higher_is_better else "lower is better"
            if c.difference is None:
                continue
            colour = VERDICT_COLOURS.get(c.verdict, "#4d4d4d")
            y = rows[c.variant]
            if c.ci_low is not None and c.ci_high is not None:
                axis.hlines(y, c.ci_low, c.ci_high, color=colour, linewidth=2.5)
            axis.plot(
                c.difference,
                y,
                "o",
                markersize=8,
                color=colour,
                markerfacecolor="white" if c.verdict == "too few cases" else colour,
            )
        spread = [abs(x) for c in comparisons if c.metric == metric for x in (c.difference, c.ci_low, c.ci_high) if x]
        if max(spread, default=0.0) < 1e-9:  # every variant equal to the baseline: a unit scale, not 1e-17 ticks
            axis.set_xlim(-1, 1)
        axis.axvline(0, color="#999999", linewidth=1, linestyle="--")
        axis.set_title(f"{metric} ({direction})", fontsize=11)
        axis.tick_params(labelsize=10)
        axis.grid(axis="x", color="#eeeeee")
        axis.margins(x=0.15)
    for axis in axes[len(metrics) :]:
        axis.set_visible(False)
    axes[0].set_yticks(list(rows.values()), list(rows))
    axes[0].set_ylim(-0.7, len(variants) - 0.3)
    baseline = comparisons[0].baseline
    label = interval_label(c.confidence for c in comparisons)
    figure.suptitle(
        title or f"Difference from the baseline: each variant minus {baseline}, with its {label}", fontsize=12
    )
    handles = [
        Line2D([], [], marker="o", markersize=8, color=c, linestyle="", label=v) for v, c in VERDICT_COLOURS.items()
    ]
    figure.legend(handles=handles, loc="outside lower center", ncols=4, fontsize=10, frameon=False)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, format="png", dpi=_DPI)
    return out
