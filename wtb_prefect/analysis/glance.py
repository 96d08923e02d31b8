"""The one-glance answer of a batch: which variant to pick, in one table and one sentence.

:func:`one_glance` turns a batch's paired analysis (the corrected verdicts of
:meth:`~wtb_prefect.analysis.batch_result.BatchTestResult.analysis`) into a
:class:`Glance`: variants as rows (the baseline first), metrics as columns
(quality, then latency, then cost when recorded), each cell the variant's mean
with a mark for its verdict against the baseline, the best per metric flagged
only when it is distinguishable, and one sentence that names the variant to
pick and why, or says that none is distinguishable and how many cases would be.

Every view (the CLI, ``batch.summary()``, the report, the Prefect summary, the
MLflow parent run) renders this one object, so they cannot disagree. It is
pure: no I/O, no services.

Adding a column is listing it: append a :class:`GlanceColumn` to
:data:`EXTRA_COLUMNS` and it shows in every view of every batch that recorded
that metric. A listed metric gets verdict marks when it is in the batch's family
of tests (:func:`~wtb_prefect.analysis.verdicts.family_metrics`), else its mean only.
"""

from __future__ import annotations

import math
import statistics
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from wtb_prefect.analysis.comparison import AnalysedBatch, resolve_baseline
from wtb_prefect.analysis.evaluation import lower_is_better
from wtb_prefect.analysis.paired import MIN_PAIRED_CASES, PairedComparison
from wtb_prefect.analysis.verdicts import metric_by_case

__all__ = [
    "EXTRA_COLUMNS",
    "MARKS",
    "Glance",
    "GlanceCell",
    "GlanceColumn",
    "SummaryTable",
    "cases_needed",
    "one_glance",
]

Kind = Literal["quality", "latency", "cost"]


@dataclass(frozen=True)
class GlanceColumn:
    """One metric column of the one-glance table.

    ``metric`` is the name in :attr:`ExecutionResult.metrics`; ``heading`` what
    the table shows; ``kind`` where it goes (quality first, then latency, then
    cost) and how the sentence weighs it (only quality decides a pick; latency
    and cost are named as trade-offs); ``digits`` the decimals of its means.
    """

    metric: str
    heading: str
    kind: Kind = "quality"
    digits: int = 3


EXTRA_COLUMNS: list[GlanceColumn] = [
    GlanceColumn("run_s", "run s", "latency", 3),
    GlanceColumn("cost_usd", "cost $", "cost", 4),
    GlanceColumn("total.cost_usd", "cost $", "cost", 4),
]
"""The columns after the quality ones, each shown when the batch recorded its metric (first of a heading wins)."""

MARKS = {
    "better": "▲",
    "worse": "▼",
    "no detectable difference": "=",
    "too few cases": "?",
}
"""The mark of each verdict in a cell."""

LEGEND = "▲ better · ▼ worse · = no detectable difference · ? too few cases (each against the baseline)"

DETECT_POINTS = 0.05
"""The difference the sentence sizes a batch for: 5 points on a 0-1 metric, 5% of the baseline's mean otherwise."""

_POWER = 0.8


@dataclass(frozen=True)
class GlanceCell:
    """One (variant, metric) cell: the variant's mean, its verdict against the baseline, whether it is the best."""

    mean: float | None
    verdict: str = ""
    """Empty for the baseline's own row and for a metric outside the batch's tests."""
    difference: float | None = None
    best: bool = False
    """The best mean of the column, and distinguishable from the rest (see :func:`one_glance`)."""

    @property
    def mark(self) -> str:
        """The verdict's mark (see :data:`MARKS`); empty for the baseline."""
        return MARKS.get(self.verdict, "")

    def text(self, digits: int = 3) -> str:
        """``0.820 ▲``: the mean and the mark."""
        if self.mean is None:
            return "–"
        return f"{_number(self.mean, digits)} {self.mark}".rstrip()


@dataclass
class Glance:
    """A batch's one-glance answer: the compact table and the sentence."""

    baseline: str
    variants: list[str]
    """Row order: the baseline first, then the other combinations in matrix order."""
    columns: list[GlanceColumn]
    cells: dict[tuple[str, str], GlanceCell]
    """``(variant, metric) -> cell``."""
    answer: str
    """One sentence: the variant to pick and why, or why none can be picked."""
    pick: str | None = None
    """The variant the sentence recommends (the baseline when it says keep it), None when it cannot tell."""
    n: int = 0
    """Paired cases behind the verdicts (the most any comparison of the first quality metric had)."""
    cases_needed: int | None = None
    """When no variant is distinguishable: about how many cases would detect :data:`DETECT_POINTS`."""
    notes: list[str] = field(default_factory=list)

    def cell(self, variant: str, metric: str) -> GlanceCell:
        """The cell of ``variant`` on ``metric``."""
        return self.cells.get((variant, metric), GlanceCell(None))

    def rows(self) -> list[dict[str, str]]:
        """The table as plain rows: ``{"variant": label, heading: "0.820 ▲", ...}`` (best marked with ``*``)."""
        out = []
        for variant in self.variants:
            row = {"variant": variant + (" (baseline)" if variant == self.baseline else "")}
            for column in self.columns:
                c = self.cell(variant, column.metric)
                row[column.heading] = c.text(column.digits) + (" *" if c.best else "")
            out.append(row)
        return out

    def markdown(self) -> str:
        """The sentence, the table (best in bold) and its legend, as Markdown."""
        head = "| variant | " + " | ".join(_md(c.heading) for c in self.columns) + " |"
        rule = "|---|" + "---:|" * len(self.columns)
        lines = [f"**{_md(self.answer)}**", "", head, rule]
        for variant in self.variants:
            label = f"`{_md(variant)}`" + (" (baseline)" if variant == self.baseline else "")
            cells = []
            for column in self.columns:
                c = self.cell(variant, column.metric)
                text = _md(c.text(column.digits))
                cells.append(f"**{text}**" if c.best else text)
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines += ["", f"{LEGEND}; **bold**: the best, told apart from the rest."]
        return "\n".join(lines)

    def text(self, width: int = 100) -> str:
        """The sentence and the table as plain text (for ``print`` and logs), the prose wrapped at ``width``."""
        rows = []
        for variant in self.variants:  # the mark and best flag in fixed places, so the numbers line up
            row = {"variant": variant + (" (baseline)" if variant == self.baseline else "")}
            for column in self.columns:
                c = self.cell(variant, column.metric)
                number = "–" if c.mean is None else _number(c.mean, column.digits)
                row[column.heading] = f"{number} {c.mark or ' '}{'*' if c.best else ' '}"
            rows.append(row)
        headings = ["variant", *(c.heading for c in self.columns)]
        widths = [max(len(h), *(len(r[h]) for r in rows)) for h in headings]
        lines = [*textwrap.wrap(self.answer, width), ""]
        lines.append("  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headings, widths))))
        for row in rows:
            lines.append(
                "  ".join(
                    row[h].ljust(w) if i == 0 else row[h].rjust(w) for i, (h, w) in enumerate(zip(headings, widths))
                )
            )
        lines += textwrap.wrap(f"{LEGEND}; * the best, told apart from the rest", width)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.text()


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _number(value: float, digits: int = 3) -> str:
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


# ─── how many cases ───


def cases_needed(
    sd_difference: float, detect: float, alpha: float = 0.05, power: float = _POWER, binary: bool = False
) -> int | None:
    """About how many paired cases a two-sided paired test at ``alpha`` needs to detect ``detect`` with ``power``.

    The inverse of :func:`~wtb_prefect.analysis.paired.minimal_detectable_effect`:
    ``n = ((z(1 - alpha/2) + z(power)) * sd / detect)^2`` with the standard
    deviation of the paired differences. For 0/1 values the variance is at
    least ``detect * (1 - detect)`` (a difference of ``detect`` needs at least
    that share of discordant cases), and ``n`` at least what exact McNemar needs
    when every discordant pair goes one way. At least
    :data:`~wtb_prefect.analysis.paired.MIN_PAIRED_CASES`; None when the
    differences have no spread to scale from (continuous values equal on every case).
    """
    if detect <= 0:
        return None
    variance = sd_difference**2
    if binary:
        variance = max(variance, detect * (1 - detect))
    if variance <= 0:
        return None
    normal = statistics.NormalDist()
    z = normal.inv_cdf(1 - alpha / 2) + normal.inv_cdf(power)
    n = math.ceil((z * math.sqrt(variance) / detect) ** 2)
    if binary:
        fewest = math.ceil(math.log2(2 / alpha))  # exact McNemar: 2 * 0.5**k <= alpha
        n = max(n, math.ceil(fewest / detect))
    return max(n, MIN_PAIRED_CASES)


# ─── the table ───


def _columns(results: Sequence, comparisons: Sequence[PairedComparison]) -> list[GlanceColumn]:
    recorded = {m for r in results for m in r.metrics}
    scores = sorted({s for r in results for s in r.scores})
    quality = []
    failed = any(r.status == "failed" for r in results)
    if failed or not scores:  # success only tells variants apart when something failed (or nothing else is scored)
        quality.append(GlanceColumn("success", "success"))
    quality += [GlanceColumn(name, name) for name in scores]
    columns = list(quality)
    seen = {c.heading for c in columns}
    for column in EXTRA_COLUMNS:
        if column.metric in recorded and column.heading not in seen:
            columns.append(column)
            seen.add(column.heading)
    order = {"quality": 0, "latency": 1, "cost": 2}
    return sorted(columns, key=lambda c: order[c.kind])


def _means(results: Sequence, metric: str) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for variant, cases in metric_by_case(results, metric).items():
        per_case = [statistics.fmean(v) for v in cases.values() if v]
        out[variant] = statistics.fmean(per_case) if per_case else None
    return out


def _best(column: GlanceColumn, variants: list[str], baseline: str, cells: dict) -> str | None:
    """The variant whose mean is best, when the verdicts tell it apart from every other row."""
    scored = [(v, cells[(v, column.metric)].mean) for v in variants if cells[(v, column.metric)].mean is not None]
    if len(scored) < 2:
        return None
    pick = min if lower_is_better(column.metric) else max
    best, _ = pick(scored, key=lambda item: item[1])
    others = [cells[(v, column.metric)].verdict for v in variants if v != baseline]
    if best == baseline:
        return baseline if others and all(verdict == "worse" for verdict in others) else None
    better = [v for v in variants if v != baseline and cells[(v, column.metric)].verdict == "better"]
    return best if better == [best] else None


def one_glance(
    batch: AnalysedBatch, baseline: str | None = None, columns: Sequence[GlanceColumn] | None = None
) -> Glance:
    """The one-glance answer of ``batch`` against ``baseline`` (None: the first combination).

    Cells hold each variant's mean over its completed cases (repetitions averaged
    per case first) and the corrected paired verdict of the batch's analysis.
    A column's best is highlighted only when it is distinguishable: a variant
    that is the only one better than the baseline and has the best mean, or the
    baseline when every other variant is worse.

    Raises:
        ConfigError: an unknown baseline, or an empty batch.
    """
    base = resolve_baseline(batch, baseline)
    labels = list(batch.by_variant())
    variants = [base, *(v for v in labels if v != base)]
    comparisons = batch.analysis(base).comparisons if len(labels) > 1 else []
    chosen = list(columns) if columns is not None else _columns(batch.results, comparisons)
    by_key = {(c.variant, c.metric): c for c in comparisons}
    cells: dict[tuple[str, str], GlanceCell] = {}
    for column in chosen:
        means = _means(batch.results, column.metric)
        for variant in variants:
            c = by_key.get((variant, column.metric))
            cells[(variant, column.metric)] = GlanceCell(
                mean=means.get(variant),
                verdict=c.verdict if c is not None else "",
                difference=c.difference if c is not None else None,
            )
    for column in chosen:
        winner = _best(column, variants, base, cells)
        if winner is not None:
            key = (winner, column.metric)
            cells[key] = GlanceCell(cells[key].mean, cells[key].verdict, cells[key].difference, best=True)
    glance = Glance(baseline=base, variants=variants, columns=chosen, cells=cells, answer="")
    _answer(glance, comparisons, batch)
    return glance


# ─── the sentence ───


def _figure(glance: Glance, variant: str, column: GlanceColumn) -> str:
    mine = glance.cell(variant, column.metric).mean
    theirs = glance.cell(glance.baseline, column.metric).mean
    if mine is None or theirs is None:
        return column.heading
    return f"{column.heading} {_number(mine, column.digits)} vs {_number(theirs, column.digits)}"


def _named(glance: Glance, variant: str, columns: list[GlanceColumn]) -> str:
    return ", ".join(_figure(glance, variant, c) for c in columns)


def _answer(glance: Glance, comparisons: Sequence[PairedComparison], batch: AnalysedBatch) -> None:
    base = glance.baseline
    others = glance.variants[1:]
    quality = [c for c in glance.columns if c.kind == "quality"]
    trade = [c for c in glance.columns if c.kind != "quality"]
    if not others:
        glance.answer = f"Only one variant combination ({base}): nothing to compare."
        glance.pick = base
        return
    primary = quality[0] if quality else (glance.columns[0] if glance.columns else None)
    primary_rows = [c for c in comparisons if primary is not None and c.metric == primary.metric]
    glance.n = max((c.n for c in primary_rows), default=0)

    def verdicts(variant: str, columns: list[GlanceColumn], verdict: str) -> list[GlanceColumn]:
        return [c for c in columns if glance.cell(variant, c.metric).verdict == verdict]

    tested = [c for c in comparisons if c.metric in {q.metric for q in quality} and c.verdict != "too few cases"]
    if quality and not tested:
        glance.answer = (
            f"Too few cases to tell the variants apart: {glance.n} paired cases, "
            f"a verdict needs at least {MIN_PAIRED_CASES}."
        )
        return
    winners = [v for v in others if verdicts(v, quality, "better") and not verdicts(v, quality, "worse")]
    mixed = [v for v in others if verdicts(v, quality, "better") and verdicts(v, quality, "worse")]
    losers = [v for v in others if verdicts(v, quality, "worse")]
    if winners:
        sign = 1 if primary is None or not lower_is_better(primary.metric) else -1

        def strength(v: str) -> tuple[int, float]:
            mean = glance.cell(v, primary.metric).mean if primary is not None else None
            return len(verdicts(v, quality, "better")), sign * (mean if mean is not None else -math.inf)

        pick = max(winners, key=strength)
        better = verdicts(pick, quality, "better")
        sentence = f"Pick {pick}: better than {base} on {_named(glance, pick, better)}"
        rest = [c for c in quality if c not in better]
        if rest:
            sentence += ", and no worse on " + ", ".join(c.heading for c in rest)
        costs = verdicts(pick, trade, "worse")
        gains = verdicts(pick, trade, "better")
        if costs:
            sentence += f"; but worse on {_named(glance, pick, costs)}"
        if gains:
            sentence += f"; also better on {_named(glance, pick, gains)}"
        glance.answer = sentence + "."
        glance.pick = pick
        return
    if mixed:
        v = mixed[0]
        glance.answer = (
            f"No clear pick: {v} is better than {base} on {_named(glance, v, verdicts(v, quality, 'better'))} "
            f"but worse on {_named(glance, v, verdicts(v, quality, 'worse'))}."
        )
        return
    cheaper = [
        v for v in others if verdicts(v, trade, "better") and not verdicts(v, trade, "worse") and v not in losers
    ]
    if cheaper:
        v = cheaper[0]
        glance.answer = (
            f"Pick {v}: no detectable quality difference from {base}, "
            f"and better on {_named(glance, v, verdicts(v, trade, 'better'))}."
        )
        glance.pick = v
        return
    if losers:
        named = "; ".join(f"{v} is worse on {_named(glance, v, verdicts(v, quality, 'worse'))}" for v in losers)
        glance.answer = f"Keep {base}: no variant is better on quality, and {named}."
        glance.pick = base
        return
    glance.answer = _indistinguishable(glance, primary, primary_rows, comparisons, batch)


def _indistinguishable(
    glance: Glance,
    primary: GlanceColumn | None,
    rows: Sequence[PairedComparison],
    comparisons: Sequence[PairedComparison],
    batch: AnalysedBatch,
) -> str:
    sentence = f"No variant is distinguishable from the baseline {glance.baseline} at n = {glance.n}"
    if primary is None or not rows:
        return sentence + "."
    values = [
        v for values in metric_by_case(batch.results, primary.metric).values() for x in values.values() for v in x
    ]
    unit = bool(values) and all(0.0 <= v <= 1.0 for v in values)
    base_mean = glance.cell(glance.baseline, primary.metric).mean
    if unit:
        detect, size = DETECT_POINTS, f"{DETECT_POINTS * 100:.0f} points"
    elif base_mean:
        detect, size = DETECT_POINTS * abs(base_mean), f"{DETECT_POINTS * 100:.0f}%"
    else:
        return sentence + "."
    sds = [c.sd_difference for c in rows if c.sd_difference is not None]
    sd = math.sqrt(statistics.fmean(s * s for s in sds)) if sds else 0.0
    tests = sum(c.p_value is not None for c in comparisons) or 1
    alpha = batch.analysis(glance.baseline).alpha / tests  # the family's strictest threshold, as the verdicts use
    needed = cases_needed(sd, detect, alpha, binary=all(c.binary for c in rows))
    glance.cases_needed = needed
    if needed is None:
        return sentence + f"; every variant matched it on {primary.heading} in every case."
    return sentence + f"; to detect {size} on {primary.heading} you need about {needed} cases."


class SummaryTable(list):  # type: ignore[type-arg]
    """The rows of ``BatchTestResult.summary()`` (a list of dicts), with the batch's one-glance answer.

    ``str()`` and a notebook show the answer and its table; :attr:`glance` is
    the :class:`Glance` itself, computed on first use.
    """

    def __init__(self, rows: Sequence[dict], batch: AnalysedBatch) -> None:
        super().__init__(rows)
        self._batch = batch
        self._glance: Glance | None = None

    @property
    def glance(self) -> Glance:
        """The batch's one-glance answer against its first combination."""
        if self._glance is None:
            self._glance = one_glance(self._batch)
        return self._glance

    @property
    def answer(self) -> str:
        """The one sentence: the variant to pick and why, or why none can be picked."""
        return self.glance.answer

    def __str__(self) -> str:
        return self.glance.text()

    def _repr_markdown_(self) -> str:
        return self.glance.markdown()
