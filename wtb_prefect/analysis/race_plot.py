"""A race's confidence sequences over cases, and their plot.

For each variant, the running mean of its paired difference to the race's
baseline (variant minus baseline on the primary metric, case by case in the
race's order) and an anytime-valid confidence sequence around it: valid at
every case at once, so reading the plot after any round keeps its level. A
0/1 metric or an evaluator score (bounded) gets the betting sequence, a
timing the asymptotic one (see :mod:`wtb_prefect.analysis.sequential`); the
family's ``alpha`` is split evenly over the variants shown (Bonferroni).

The race's own decisions use the same kinds of sequence (against the
current leader when the goal is the best variant), so a band that leaves
zero is a verdict the race could make; where a variant was dropped is
marked on its line.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wtb_prefect.analysis.sequential import asymptotic_cs, betting_cs

__all__ = ["difference_sequences", "race_plot"]

_WIDTH_IN = 9.0  # 900 px at the saved 100 dpi, as the forest plot
_DPI = 100


def _finite(values: np.ndarray) -> list[float | None]:
    """JSON-ready floats: an unbounded side (before the asymptotic sequence's first case) is None."""
    return [float(v) if math.isfinite(v) else None for v in values]


def difference_sequences(
    per_case: np.ndarray,
    order: Sequence[int],
    labels: Sequence[str],
    baseline: int,
    bounds: tuple[float, float] | None,
    alpha: float,
) -> list[dict[str, Any]]:
    """Each non-baseline variant's paired difference to ``baseline`` over the race's cases, with its sequence.

    Args:
        per_case: ``(variants, cases)`` value of each variant on each case (NaN: not run, or no value).
        order: the case indices in the order the race took them.
        labels: the variants' names.
        baseline: index of the variant the others are compared with.
        bounds: the metric's range (its differences lie in ``[lo - hi, hi - lo]``), or None when unbounded.
        alpha: the family's level; each variant's two-sided sequence gets ``alpha / (variants - 1)``.

    Returns:
        One dict per variant: ``variant``, ``against``, ``cases`` (the case indices, in order),
        ``mean`` (running mean difference), ``lower`` and ``upper`` (None where unbounded), ``level``.
    """
    values = np.asarray(per_case, dtype=float)
    shown = [v for v in range(len(labels)) if v != baseline]
    level = alpha / max(1, len(shown))
    out: list[dict[str, Any]] = []
    for v in shown:
        cases = [int(c) for c in order if not (math.isnan(values[v, c]) or math.isnan(values[baseline, c]))]
        entry: dict[str, Any] = {"variant": labels[v], "against": labels[baseline], "cases": cases, "level": level}
        if not cases:
            out.append(entry | {"mean": [], "lower": [], "upper": []})
            continue
        d = values[v, cases] - values[baseline, cases]
        if bounds is not None:
            width = bounds[1] - bounds[0]
            lower, upper = betting_cs(d, -width, width, level, resolution=201)
        else:
            lower, upper = asymptotic_cs(d, level)
        mean = np.cumsum(d) / np.arange(1, len(d) + 1)
        out.append(entry | {"mean": _finite(mean), "lower": _finite(lower), "upper": _finite(upper)})
    return out


def race_plot(
    sequences: Sequence[dict[str, Any]],
    path: str | Path,
    *,
    metric: str,
    epsilon: float = 0.0,
    dropped_after: dict[str, int | None] | None = None,
    title: str | None = None,
) -> Path:
    """Draw ``sequences`` (from :func:`difference_sequences`) as a PNG at ``path``, 900 px wide.

    One line per variant (its running mean difference), its band (the
    confidence sequence), zero and the indifference zone (``±epsilon``), and
    a cross where a variant was dropped (``dropped_after``: cases it had run).

    Raises:
        ValueError: no sequence has a case to draw.
    """
    drawable = [s for s in sequences if s.get("cases")]
    if not drawable:
        raise ValueError("race_plot needs at least one variant with a case run against the baseline")
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    figure = Figure(figsize=(_WIDTH_IN, 4.8), layout="constrained")
    axes = figure.add_subplot()
    colours = matplotlib.colormaps["tab10"]
    for index, seq in enumerate(drawable):
        colour = colours(index % 10)
        n = np.arange(1, len(seq["cases"]) + 1)
        mean = np.array(seq["mean"], dtype=float)
        lower = np.array([np.nan if x is None else x for x in seq["lower"]], dtype=float)
        upper = np.array([np.nan if x is None else x for x in seq["upper"]], dtype=float)
        axes.plot(n, mean, color=colour, linewidth=1.6, label=f"{seq['variant']} - {seq['against']}")
        axes.fill_between(n, lower, upper, color=colour, alpha=0.18, linewidth=0)
        dropped = (dropped_after or {}).get(seq["variant"])
        if dropped:
            at = min(int(dropped), len(n))
            axes.plot([at], [mean[at - 1]], marker="X", markersize=10, color=colour, linestyle="none")
            axes.annotate(f"dropped after {dropped}", (at, mean[at - 1]), textcoords="offset points",
                          xytext=(6, 6), fontsize=8, color=colour)  # fmt: skip
    axes.axhline(0.0, color="black", linewidth=0.8)
    if epsilon > 0:
        for y in (-epsilon, epsilon):
            axes.axhline(y, color="grey", linewidth=0.8, linestyle="--")
    axes.set_xlabel("cases run (in the race's order)")
    axes.set_ylabel(f"{metric}: variant - baseline")
    axes.set_title(
        title or f"{metric}: difference to the baseline with its confidence sequence (valid at every case)",
        fontsize=10,
    )
    axes.legend(loc="best", fontsize=8)
    axes.grid(True, alpha=0.3)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=_DPI)
    return out
