"""The results of one batch and their tables and comparisons."""

from __future__ import annotations

import statistics
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from wtb_prefect.analysis.comparison import (
    ComparisonRow,
    Regression,
    ToleranceSpec,
    check_regressions,
    compare_variants,
    resolve_baseline,
)
from wtb_prefect.analysis.glance import SummaryTable
from wtb_prefect.analysis.paired import BOOTSTRAP_RESAMPLES, Correction, PairedTest, WinTieLoss
from wtb_prefect.analysis.verdicts import BatchAnalysis, analyse_batch, repetition_figures
from wtb_prefect.results import ExecutionResult

__all__ = ["BatchTestResult"]

_analysing = threading.Lock()  # the batch's observers ask for its analysis at the same time: computed once


@dataclass
class BatchTestResult:
    """Every (variant combination, test case) result of one batch."""

    batch_id: str
    project: str
    results: list[ExecutionResult]
    flow_run_id: str | None = None
    started_at: float = 0.0
    duration_s: float = 0.0
    tracking: dict[str, Any] = field(default_factory=dict)
    """Where integrations recorded the batch: MLflow run ids, trace id, gate verdicts."""
    pairwise: list[WinTieLoss] = field(default_factory=list)
    """What the comparative evaluators said of each variant against the baseline (win/tie/loss)."""
    forest_plot: str | None = None
    """Path of the PNG forest plot of the variants against the baseline, saved with the batch."""
    _analyses: dict[tuple[Any, ...], BatchAnalysis] = field(default_factory=dict, repr=False, compare=False)

    def __iter__(self) -> Iterator[ExecutionResult]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    @property
    def failed(self) -> list[ExecutionResult]:
        """The executions that did not complete."""
        return [r for r in self.results if r.status != "completed"]

    def by_variant(self) -> dict[str, list[ExecutionResult]]:
        """Results grouped by variant combination label, in matrix order."""
        groups: dict[str, list[ExecutionResult]] = {}
        for result in self.results:
            groups.setdefault(result.variant_label, []).append(result)
        return groups

    def get(self, variant_label: str, case_id: str) -> ExecutionResult:
        """The result of one variant combination on one test case."""
        for result in self.results:
            if result.variant_label == variant_label and result.case_id == case_id:
                return result
        raise KeyError(f"no result for variant {variant_label!r} and case {case_id!r}")

    def node_calls(self) -> dict[str, Any]:
        """Node calls of the batch: computed, reused (shared within it + cached from earlier
        batches), the node time the reused ones saved (seconds), and per node the lanes its
        calls took with the latest reason (``lanes``)."""
        counts = {"computed": 0, "shared": 0, "cached": 0}
        saved = 0.0
        lanes: dict[str, dict[str, Any]] = {}
        for result in self.results:
            for record in result.nodes:
                counts[record.reuse] = counts.get(record.reuse, 0) + 1
                saved += record.saved_s
                if record.lane is not None:
                    row = lanes.setdefault(record.node, {"io": 0, "task": 0, "rate_limited": 0, "reason": ""})
                    row[record.lane] += 1
                    row["rate_limited"] += record.rate_limited
                    if not row["reason"] or not record.lane_reason.startswith("finding out"):
                        row["reason"] = record.lane_reason
        calls = {**counts, "reused": counts["shared"] + counts["cached"], "time_saved_s": round(saved, 3)}
        return {**calls, "lanes": lanes} if lanes else calls

    def to_table(self) -> list[dict[str, Any]]:
        """One row per execution (see :meth:`ExecutionResult.row`)."""
        return [r.row() for r in self.results]

    def summary(self, metrics: Sequence[str] = ()) -> list[dict[str, Any]]:
        """One row per variant combination: success rate, latency and mean scores.

        ``latency_p50_s`` is end to end; ``run_p50_s`` the nodes' own run time
        and ``queue_p50_s`` their wait for workers and resources. With
        repetitions, ``pass@k``/``pass^k`` of success at the largest k; with
        comparative evaluators, ``<judge> w/t/l`` against the baseline.
        A score's mean is over the executions its evaluator scored; an
        evaluator that raised on some executions adds an ``<evaluator> errors``
        column counting them (see :attr:`ExecutionResult.evaluator_errors`).

        When its nodes called chat models, a variant's row also has
        ``usd_per_case``, ``usd_per_passed_case``, ``spent_usd`` and
        ``saved_usd`` (see :meth:`cost`).

        ``metrics`` adds a column per named execution metric (see
        :attr:`ExecutionResult.metrics`, e.g. ``"node.retriever.latency_s"`` or
        ``"total.compute_ms"``): its median over the completed executions.

        The rows come with the batch's one-glance answer: ``print(batch.summary())``
        shows which variant to pick and a variants x metrics table of verdicts;
        ``.answer`` is the sentence, ``.glance`` the whole answer
        (see :func:`wtb_prefect.analysis.glance.one_glance`).
        """
        rows = []
        repeated = self.repetitions("success")
        for label, group in self.by_variant().items():
            done = [r for r in group if r.ok]
            latencies = [r.duration_s for r in done]
            run = [sum(n.own_time_s for n in r.nodes) for r in done]
            queue = [sum(n.queue_s for n in r.nodes) for r in done]
            row: dict[str, Any] = {
                "variant": label,
                "cases": len(group),
                "success_rate": round(sum(r.ok for r in group) / len(group), 4),
                "latency_p50_s": round(statistics.median(latencies), 4) if latencies else None,
                "run_p50_s": round(statistics.median(run), 4) if run else None,
                "queue_p50_s": round(statistics.median(queue), 4) if queue else None,
            }
            if label in repeated:
                k = max(int(name.rsplit("@", 1)[1]) for name in repeated[label] if "@" in name)
                row[f"pass@{k}"] = round(repeated[label][f"success.pass@{k}"], 4)
                row[f"pass^{k}"] = round(repeated[label][f"success.pass^{k}"], 4)
            for judged in self.pairwise:
                if judged.variant == label:
                    row[f"{judged.judge} w/t/l"] = f"{judged.win_rate:.2f}/{judged.tie_rate:.2f}/{judged.loss_rate:.2f}"
            completed = [r.metrics for r in group if r.ok] if metrics else []  # each built once
            for name in metrics:
                values = [m[name] for m in completed if name in m]
                row[f"{name} p50"] = round(statistics.median(values), 3) if values else None
            score_names = sorted({k for r in group for k in r.scores})
            for name in score_names:
                values = [r.scores[name] for r in group if name in r.scores]
                row[name] = round(statistics.fmean(values), 4) if values else None
            for name in sorted({n for r in group for n in r.evaluator_errors}):
                row[f"{name} errors"] = sum(name in r.evaluator_errors for r in group)
            row.update(_cost_columns(group))
            rows.append(row)
        return SummaryTable(rows, self)

    def cost(self) -> dict[str, Any]:
        """What the batch spent on model calls and what reused calls saved, in total and per variant.

        Per variant: ``spent_usd``, ``saved_usd``, ``usd_per_case`` (spent per execution) and
        ``usd_per_passed_case`` (spent over the executions that completed; None when none did).
        For the paired difference in cost against the baseline, with its interval, use
        ``compare(metric="cost_usd")``. The batch's budget and its outcome are in
        ``tracking["cost"]``.
        """
        variants = {label: _cost_columns(group, digits=None) for label, group in self.by_variant().items()}
        return {
            "spent_usd": sum(r.cost_usd for r in self.results),
            "saved_usd": sum(r.saved_usd for r in self.results),
            "by_variant": variants,
            **{k: v for k, v in (self.tracking.get("cost") or {}).items() if k in ("outcome", "budget_usd")},
        }

    def analysis(
        self,
        baseline: str | dict[str, str] | None = None,
        metrics: Sequence[str] = (),
        *,
        correction: Correction = "holm",
        test: PairedTest = "auto",
        alpha: float = 0.05,
    ) -> BatchAnalysis:
        """The paired comparison of every variant against ``baseline`` on the batch's metrics.

        The family of tests is success, the nodes' run time (``run_s``), every
        evaluator score and ``metrics``; their p-values are corrected together
        (``holm`` by default, ``bh`` for Benjamini-Hochberg). See
        :func:`wtb_prefect.analysis.verdicts.analyse_batch`.

        Raises:
            ConfigError: an unknown baseline or a bad option.
        """
        base_label = resolve_baseline(self, baseline)
        key = (base_label, tuple(metrics), correction, test, alpha, len(self.results))
        with _analysing:
            if key not in self._analyses:
                pairwise = [w for w in self.pairwise if w.baseline == base_label]
                self._analyses[key] = analyse_batch(
                    self.results,
                    base_label,
                    metrics,
                    correction=correction,
                    test=test,
                    alpha=alpha,
                    resamples=BOOTSTRAP_RESAMPLES,
                    pairwise=pairwise,
                )
            return self._analyses[key]

    def repetitions(self, metric: str = "success") -> dict[str, dict[str, float]]:
        """pass@k and pass^k per variant of a 0/1 ``metric`` run with repetitions (see :func:`~wtb_prefect.analysis.verdicts.repetition_figures`)."""
        return repetition_figures(self.results, metric)

    def compare(
        self,
        metric: str = "success",
        baseline: str | dict[str, str] | None = None,
        confidence: float = 0.95,
        *,
        correction: Correction = "holm",
        test: PairedTest = "auto",
    ) -> list[ComparisonRow]:
        """Each variant combination against ``baseline`` on ``metric``.

        Args:
            metric: an evaluator name, ``success``/``error`` (or ``success_rate``/
                ``error_rate``), ``latency_s``, ``node.<node>.latency_s``,
                ``node.<node>.<name>`` or ``total.<name>`` of reported metrics.
            baseline: a variant label or ``{node: variant}`` dict; None = the
                first combination of the matrix.
            confidence: level of the difference's interval; a row is
                significant when its p-value, corrected over the batch's tests,
                is below ``1 - confidence``.
            correction: ``holm`` (default), ``bh`` (Benjamini-Hochberg) or ``none``.
            test: ``auto`` (exact McNemar on 0/1 values, else paired t), ``t`` or ``wilcoxon``.

        Cases are paired: each variant is compared with the baseline on the
        cases both completed (repetitions averaged per case first); below 10
        pairs the verdict is ``too few cases``.

        Raises:
            ConfigError: an unknown metric or baseline.

        Example:
            ```python
            for row in batch.compare(metric="accuracy", baseline={"retriever": "default"}):
                print(row.variant, row.difference, row.ci_low, row.ci_high, row.p_adjusted, row.verdict)
            ```
        """
        return compare_variants(self, metric, baseline, confidence, correction=correction, test=test)

    def regressions(
        self,
        baseline: str | dict[str, str] | None,
        tolerances: dict[str, ToleranceSpec] | list[str],
    ) -> list[Regression]:
        """The combinations worse than ``baseline`` beyond ``tolerances`` (see :func:`~wtb_prefect.analysis.comparison.check_regressions`)."""
        return check_regressions(self, baseline, tolerances)

    def to_pandas(self) -> Any:
        """The per-execution table as a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame(self.to_table())


def _cost_columns(group: list[ExecutionResult], digits: int | None = 6) -> dict[str, Any]:
    """A variant's cost columns (none when its executions called no model)."""
    if not any(n.usage or n.saved_usage for r in group for n in r.nodes):
        return {}
    spent = sum(r.cost_usd for r in group)
    passed = sum(1 for r in group if r.ok)
    figures = {
        "usd_per_case": spent / len(group),
        "usd_per_passed_case": spent / passed if passed else None,
        "spent_usd": spent,
        "saved_usd": sum(r.saved_usd for r in group),
    }
    if digits is None:
        return figures
    return {k: (round(v, digits) if v is not None else None) for k, v in figures.items()}
