"""Results of executions and batches, and their tables."""

from __future__ import annotations

import statistics
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from .comparison import ComparisonRow, Regression, ToleranceSpec

__all__ = ["BatchTestResult", "ErrorInfo", "ExecutionResult", "NodeRecord"]

Status = Literal["completed", "failed", "paused", "running"]


@dataclass
class ErrorInfo:
    """Why an execution or a node failed."""

    type: str
    message: str
    node: str | None = None
    traceback: str = ""

    def __str__(self) -> str:
        where = f" in node {self.node!r}" if self.node else ""
        return f"{self.type}{where}: {self.message}"


@dataclass
class NodeRecord:
    """One run of one node inside an execution."""

    node: str
    implementation: str
    version: str
    started_at: float
    duration_s: float
    status: Literal["completed", "failed"]
    output: Any = None
    error: ErrorInfo | None = None
    task_run_id: str | None = None
    resources: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class ExecutionResult:
    """The outcome of one execution (one LangGraph thread).

    ``final_state`` is exactly what ``graph.invoke`` returned; for a failed
    or paused execution it is the state of the last checkpoint.
    """

    execution_id: str
    project: str
    variant: dict[str, str]
    variant_label: str
    status: Status
    initial_state: dict[str, Any]
    final_state: Any = None
    error: ErrorInfo | None = None
    nodes: list[NodeRecord] = field(default_factory=list)
    started_at: float = 0.0
    duration_s: float = 0.0
    case_id: str = ""
    expected: Any = None
    batch_id: str | None = None
    flow_run_id: str | None = None
    scores: dict[str, float] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when the execution completed."""
        return self.status == "completed"

    @property
    def node_timings(self) -> dict[str, float]:
        """Seconds spent in each node (summed when a node ran more than once)."""
        timings: dict[str, float] = {}
        for record in self.nodes:
            timings[record.node] = timings.get(record.node, 0.0) + record.duration_s
        return timings

    @property
    def node_outputs(self) -> dict[str, list[Any]]:
        """What each node returned, in order of its runs."""
        outputs: dict[str, list[Any]] = {}
        for record in self.nodes:
            outputs.setdefault(record.node, []).append(record.output)
        return outputs

    @property
    def metrics(self) -> dict[str, float]:
        """Every number recorded for this execution (see :mod:`wtb_prefect.evaluation`).

        ``success`` and ``error`` (1.0 or 0.0), ``latency_s``,
        ``node.<node>.latency_s``, what nodes reported with
        :func:`wtb_prefect.log_node_metrics` as ``node.<node>.<name>`` and
        summed as ``total.<name>``, and the evaluator scores.
        """
        metrics: dict[str, float] = {
            "success": 1.0 if self.status == "completed" else 0.0,
            "error": 1.0 if self.status == "failed" else 0.0,
            "latency_s": self.duration_s,
        }
        for node, seconds in self.node_timings.items():
            metrics[f"node.{node}.latency_s"] = seconds
        for record in self.nodes:
            for name, value in record.metrics.items():
                key = f"node.{record.node}.{name}"
                metrics[key] = metrics.get(key, 0.0) + value
                metrics[f"total.{name}"] = metrics.get(f"total.{name}", 0.0) + value
        metrics.update(self.scores)
        return metrics

    def row(self) -> dict[str, Any]:
        """A flat, table-friendly summary of this execution."""
        return {
            "variant": self.variant_label,
            "case": self.case_id,
            "status": self.status,
            "latency_s": round(self.duration_s, 4),
            **{f"node.{n}_s": round(t, 4) for n, t in self.node_timings.items()},
            **{k: v for k, v in self.scores.items()},
            "error": str(self.error) if self.error else "",
            "execution_id": self.execution_id,
        }


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
        from .comparison import compare_variants

        return compare_variants(self, metric, baseline, confidence)

    def regressions(
        self,
        baseline: str | dict[str, str] | None,
        tolerances: dict[str, ToleranceSpec] | list[str],
    ) -> list[Regression]:
        """The combinations worse than ``baseline`` beyond ``tolerances`` (see :func:`~wtb_prefect.comparison.check_regressions`)."""
        from .comparison import check_regressions

        return check_regressions(self, baseline, tolerances)

    def to_pandas(self) -> Any:
        """The per-execution table as a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame(self.to_table())
