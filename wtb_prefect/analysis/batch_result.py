"""The results of one batch and their tables and comparisons."""

from __future__ import annotations

import statistics
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from wtb_prefect.analysis.comparison import (
    ComparisonRow,
    Regression,
    ToleranceSpec,
    check_regressions,
    compare_variants,
)
from wtb_prefect.results import ExecutionResult

__all__ = ["BatchTestResult"]


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

    def to_table(self) -> list[dict[str, Any]]:
        """One row per execution (see :meth:`ExecutionResult.row`)."""
        return [r.row() for r in self.results]

    def summary(self, metrics: Sequence[str] = ()) -> list[dict[str, Any]]:
        """One row per variant combination: success rate, latency and mean scores.

        A score's mean is over the executions its evaluator scored; an
        evaluator that raised on some executions adds an ``<evaluator> errors``
        column counting them (see :attr:`ExecutionResult.evaluator_errors`).

        ``metrics`` adds a column per named execution metric (see
        :attr:`ExecutionResult.metrics`, e.g. ``"node.retriever.latency_s"`` or
        ``"total.compute_ms"``): its median over the completed executions.
        """
        rows = []
        for label, group in self.by_variant().items():
            latencies = [r.duration_s for r in group if r.ok]
            row: dict[str, Any] = {
                "variant": label,
                "cases": len(group),
                "success_rate": round(sum(r.ok for r in group) / len(group), 4),
                "latency_p50_s": round(statistics.median(latencies), 4) if latencies else None,
            }
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
            rows.append(row)
        return rows

    def compare(
        self,
        metric: str = "success",
        baseline: str | dict[str, str] | None = None,
        confidence: float = 0.95,
    ) -> list[ComparisonRow]:
        """Each variant combination against ``baseline`` on ``metric``.

        Args:
            metric: an evaluator name, ``success``/``error`` (or ``success_rate``/
                ``error_rate``), ``latency_s``, ``node.<node>.latency_s``,
                ``node.<node>.<name>`` or ``total.<name>`` of reported metrics.
            baseline: a variant label or ``{node: variant}`` dict; None = the
                first combination of the matrix.
            confidence: level of the difference's interval; significance is a
                Welch t-test p-value below ``1 - confidence``.

        Raises:
            ConfigError: an unknown metric or baseline.

        Example:
            ```python
            for row in batch.compare(metric="accuracy", baseline={"retriever": "default"}):
                print(row.variant, row.value, row.difference, row.p_value, row.significant)
            ```
        """
        return compare_variants(self, metric, baseline, confidence)

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
