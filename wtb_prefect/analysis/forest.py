"""A forest plot of paired comparisons: each variant's difference from the baseline with its interval.

One panel per metric, one row per variant; the point is ``variant - baseline``,
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
    "no detectable difference": "#4d4d4d",
    "too few cases": "#bdbdbd",
}


def forest_plot(comparisons: Sequence[PairedComparison], path: str | Path, title: str | None = None) -> Path:
    """Draw ``comparisons`` as a forest plot and save it as a PNG at ``path``.

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
    figure = Figure(figsize=(max(4.0, 3.6 * len(metrics)), 1.2 + 0.45 * len(variants)), layout="constrained")
    axes = figure.subplots(1, len(metrics), sharey=True, squeeze=False)[0]
    rows = {v: len(variants) - 1 - i for i, v in enumerate(variants)}
    for axis, metric in zip(axes, metrics, strict=True):
        direction = "higher is better"
        for c in (c for c in comparisons if c.metric == metric):
            direction = "higher is better" if c.higher_is_better else "lower is better"
            if c.difference is None:
                continue
            colour = VERDICT_COLOURS.get(c.verdict, "#4d4d4d")
            y = rows[c.variant]
            if c.ci_low is not None and c.ci_high is not None:
                axis.hlines(y, c.ci_low, c.ci_high, color=colour, linewidth=2)
            axis.plot(
                c.difference, y, "o", color=colour, markerfacecolor="white" if c.verdict == "too few cases" else colour
            )
        axis.axvline(0, color="#999999", linewidth=1, linestyle="--")
        axis.set_title(f"{metric}\n({direction})", fontsize=9)
        axis.set_xlabel("difference vs baseline", fontsize=8)
        axis.tick_params(labelsize=8)
    axes[0].set_yticks(list(rows.values()), list(rows))
    axes[0].set_ylim(-0.7, len(variants) - 0.3)
    baseline = comparisons[0].baseline
    label = interval_label(c.confidence for c in comparisons)
    figure.suptitle(title or f"Each variant minus {baseline} ({label})", fontsize=10)
    handles = [Line2D([], [], marker="o", color=c, linestyle="", label=v) for v, c in VERDICT_COLOURS.items()]
    figure.legend(handles=handles, loc="outside lower center", ncols=4, fontsize=7, frameon=False)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, format="png", dpi=110)
    return out
