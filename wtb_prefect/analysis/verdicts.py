"""The paired analysis of one batch: every variant against the baseline, on every metric, corrected together.

:func:`analyse_batch` takes a batch's results, groups each metric's values by
variant and case (repetitions of a case stay together and are averaged by
:mod:`wtb_prefect.analysis.paired`), and corrects the p-values over the
batch's family of tests: ``success``, ``run_s`` (the nodes' own run time,
see :mod:`wtb_prefect.analysis.evaluation`) and every evaluator score, plus
the metrics asked for. ``success`` counts every finished execution of a case;
every other metric only the executions that completed, so a case that failed
in one variant is left out of that variant's pairs and reported.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from wtb_prefect.analysis.evaluation import lower_is_better
from wtb_prefect.analysis.paired import (
    BOOTSTRAP_RESAMPLES,
    Correction,
    PairedComparison,
    PairedTest,
    WinTieLoss,
    compare_family,
    interval_label,
    pass_at_k,
    pass_hat_k,
    verdict_code,
)

if TYPE_CHECKING:
    from wtb_prefect.results import ExecutionResult

__all__ = ["BatchAnalysis", "analyse_batch", "family_metrics", "metric_by_case", "repetition_figures"]

_EVERY_FINISHED = ("success", "error")


def _finished(result: ExecutionResult) -> bool:
    return result.status in ("completed", "failed")


def metric_by_case(results: Iterable[ExecutionResult], name: str) -> dict[str, dict[str, list[float]]]:
    """``{variant label: {case id: [value per repetition]}}`` of metric ``name``.

    ``success`` and ``error`` count every finished execution; other metrics the
    completed ones.
    """
    data: dict[str, dict[str, list[float]]] = {}
    for result in results:
        usable = _finished(result) if name in _EVERY_FINISHED else result.status == "completed"
        cases = data.setdefault(result.variant_label, {})
        if not usable:
            continue
        metrics = result.metrics
        if name in metrics:
            cases.setdefault(result.case_id, []).append(float(metrics[name]))
    return data


def family_metrics(results: Sequence[ExecutionResult], extra: Iterable[str] = ()) -> list[str]:
    """The metrics a batch tests together: success, the nodes' run time, every score, and ``extra``."""
    names = ["success", "run_s", *sorted({s for r in results for s in r.scores})]
    present = {m for r in results for m in r.metrics}
    names += [m for m in extra if m not in names]
    return [m for m in names if m in present]


@dataclass
class BatchAnalysis:
    """The paired comparisons of a batch against its baseline, and the judges' win/tie/loss."""

    baseline: str
    comparisons: list[PairedComparison]
    correction: str
    alpha: float
    pairwise: list[WinTieLoss] = field(default_factory=list)

    @property
    def interval(self) -> str:
        """The heading of the comparisons' intervals, e.g. ``"99.8% CI"`` (their level follows the correction)."""
        return interval_label(c.confidence for c in self.comparisons)

    def rows(self, metric: str | None = None) -> list[PairedComparison]:
        """The comparisons of ``metric`` (all when None), in matrix order."""
        return [c for c in self.comparisons if metric is None or c.metric == metric]

    def verdicts(self) -> dict[str, dict[str, str]]:
        """``{variant: {metric: verdict}}``."""
        out: dict[str, dict[str, str]] = {}
        for c in self.comparisons:
            out.setdefault(c.variant, {})[c.metric] = c.verdict
        return out

    def verdict_metrics(self) -> dict[str, dict[str, float]]:
        """``{variant: {"verdict.<metric>": 1 | 0 | -1}}`` for metric stores ("too few cases" left out)."""
        out: dict[str, dict[str, float]] = {}
        for c in self.comparisons:
            code = verdict_code(c.verdict)
            if code is not None:
                out.setdefault(c.variant, {})[f"verdict.{c.metric}"] = code
        return out

    def table(self, digits: int = 4) -> list[dict[str, Any]]:
        """One flat row per (variant, metric) for display."""
        rows = []
        for c in self.comparisons:
            row = {
                "variant": c.variant,
                "metric": c.metric,
                "n": c.n,
                "value": c.value,
                "baseline": c.baseline,
                "baseline_value": c.baseline_value,
                "difference": c.difference,
                "ci_low": c.ci_low,
                "ci_high": c.ci_high,
                "p_value": c.p_value,
                "p_adjusted": c.p_adjusted,
                "test": c.test,
                "verdict": c.verdict,
                "mde": c.mde,
                "missing": len(c.missing),
            }
            rows.append({k: round(v, digits) if isinstance(v, float) else v for k, v in row.items()})
        return rows


def analyse_batch(
    results: Sequence[ExecutionResult],
    baseline: str,
    metrics: Iterable[str] = (),
    *,
    correction: Correction = "holm",
    test: PairedTest = "auto",
    alpha: float = 0.05,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
    pairwise: Sequence[WinTieLoss] = (),
) -> BatchAnalysis:
    """Compare every variant of ``results`` with ``baseline`` on the batch's family of metrics.

    The family is :func:`family_metrics` plus ``metrics``; the direction of each
    metric is :func:`~wtb_prefect.analysis.evaluation.lower_is_better`.

    Raises:
        ConfigError: a bad option (see :func:`wtb_prefect.analysis.paired.compare_family`).
    """
    names = family_metrics(results, metrics)
    data = {name: metric_by_case(results, name) for name in names}
    for by_variant in data.values():
        by_variant.setdefault(baseline, {})
    comparisons = compare_family(
        data,
        baseline,
        higher_is_better={name: not lower_is_better(name) for name in names},
        correction=correction,
        test=test,
        alpha=alpha,
        resamples=resamples,
        seed=seed,
    )
    return BatchAnalysis(baseline, comparisons, correction, alpha, list(pairwise))


def repetition_figures(results: Sequence[ExecutionResult], metric: str = "success") -> dict[str, dict[str, float]]:
    """Per variant, for a 0/1 metric run with repetitions: ``pass@k`` and ``pass^k`` for k = 1..repetitions.

    Variants whose cases do not all have the same number (at least 2) of 0/1
    values are left out.
    """
    out: dict[str, dict[str, float]] = {}
    for variant, cases in metric_by_case(results, metric).items():
        counts = {len(v) for v in cases.values()}
        if len(counts) != 1 or (reps := counts.pop()) < 2:
            continue
        if any(x not in (0.0, 1.0) for v in cases.values() for x in v):
            continue
        figures = {}
        for k in range(1, reps + 1):
            figures[f"{metric}.pass@{k}"] = pass_at_k(cases, k)
            figures[f"{metric}.pass^{k}"] = pass_hat_k(cases, k)
        out[variant] = figures
    return out


def by_label(comparisons: Iterable[PairedComparison]) -> Mapping[tuple[str, str], PairedComparison]:
    """Comparisons keyed by ``(variant, metric)``."""
    return {(c.variant, c.metric): c for c in comparisons}
