"""Metrics of executions and their aggregation over the test cases of a variant.

Every execution has built-in metrics (see :attr:`ExecutionResult.metrics`):
``success``, ``error``, ``latency_s``, ``run_s``, ``queue_s``,
``node.<node>.latency_s``, ``node.<node>.run_s``, the metrics
nodes report with :func:`wtb_prefect.log_node_metrics` (``node.<node>.<name>``
and their sum ``total.<name>``) and the evaluator scores registered with
``project.register_evaluator`` (under the evaluator's name, or
``<evaluator>.<key>`` for an evaluator that returns a dict).

:func:`aggregate_metrics` turns the executions of one variant combination into
the figures MLflow records: rates, mean and confidence interval of every score
and reported metric, p50/p95 of every latency.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from wtb_prefect.analysis.stats import mean_ci, percentile

if TYPE_CHECKING:
    from wtb_prefect.results import ExecutionResult

__all__ = ["aggregate_metrics", "is_latency", "lower_is_better", "metric_values", "score_case"]

_LOWER_IS_BETTER = ("latency", "error", "cost", "tokens", "duration", "time")


_TIMINGS = ("latency_s", "run_s", "queue_s")


def is_latency(name: str) -> bool:
    """True for the built-in timings: ``latency_s``, ``run_s``, ``queue_s``, and each node's."""
    return name in _TIMINGS or (name.startswith("node.") and name.rsplit(".", 1)[-1] in _TIMINGS)


def lower_is_better(name: str) -> bool:
    """The default direction of a metric: latencies, errors, cost and tokens go down."""
    if is_latency(name):
        return True
    last = name.rsplit(".", 1)[-1] if name.startswith(("node.", "total.")) else name
    return any(word in last.lower() for word in _LOWER_IS_BETTER)


def metric_values(results: Sequence[ExecutionResult], name: str) -> list[float]:
    """The values of metric ``name`` over ``results`` (latencies of completed executions only)."""
    return [
        r.metrics[name]
        for r in results
        if name in r.metrics and (r.status == "completed" or not is_latency(name))
    ]


def aggregate_metrics(results: Sequence[ExecutionResult], confidence: float = 0.95) -> dict[str, float]:
    """One variant combination's figures over its test cases.

    ``cases``, ``success_rate``, ``error_rate``; for each latency
    ``<name>.p50``, ``<name>.p95`` and ``<name>.mean`` over completed
    executions; for every other metric ``<name>.mean`` and
    ``<name>.ci95_low``/``<name>.ci95_high`` (with ``confidence=0.95``;
    the interval is left out below two values).
    """
    figures: dict[str, float] = {"cases": float(len(results))}
    if not results:
        return figures
    figures["success_rate"] = sum(r.status == "completed" for r in results) / len(results)
    figures["error_rate"] = sum(r.status == "failed" for r in results) / len(results)
    names = sorted({name for r in results for name in r.metrics} - {"success", "error"})
    tag = f"ci{round(confidence * 100)}"
    for name in names:
        values = metric_values(results, name)
        if not values:
            continue
        if is_latency(name):
            figures[f"{name}.p50"] = percentile(values, 50)
            figures[f"{name}.p95"] = percentile(values, 95)
            figures[f"{name}.mean"] = sum(values) / len(values)
            continue
        ci = mean_ci(values, confidence)
        figures[f"{name}.mean"] = ci.mean
        if ci.low is not None and ci.high is not None:
            figures[f"{name}.{tag}_low"] = ci.low
            figures[f"{name}.{tag}_high"] = ci.high
    return figures


def score_case(
    evaluators: Mapping[str, Callable[[Any, dict[str, Any]], Any]], final_state: Any, case: Mapping[str, Any]
) -> dict[str, float]:
    """Every evaluator's score of one execution: ``{name: value}``, or
    ``{name.key: value}`` for an evaluator that returns a dict."""
    scores: dict[str, float] = {}
    for name, evaluator in evaluators.items():
        value = evaluator(final_state, dict(case))
        if isinstance(value, Mapping):
            scores.update({f"{name}.{k}" if k != name else name: float(v) for k, v in value.items()})
        else:
            scores[name] = float(value)
    return scores
