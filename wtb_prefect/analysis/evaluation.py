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

import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from wtb_prefect.analysis.stats import mean_ci, percentile
from wtb_prefect.results import ErrorInfo

if TYPE_CHECKING:
    from wtb_prefect.results import ExecutionResult

__all__ = ["MissingCaseField", "aggregate_metrics", "is_latency", "lower_is_better", "metric_values", "score_case"]

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
    return _values([(r, r.metrics) for r in results], name)


def _values(measured: Sequence[tuple[ExecutionResult, dict[str, float]]], name: str) -> list[float]:
    """:func:`metric_values` over ``(result, result.metrics)`` pairs (``metrics`` builds a new dict at each read)."""
    latency = is_latency(name)
    return [m[name] for r, m in measured if name in m and (not latency or r.status == "completed")]


def aggregate_metrics(results: Sequence[ExecutionResult], confidence: float = 0.95) -> dict[str, float]:
    """One variant combination's figures over its test cases.

    ``cases``, ``success_rate``, ``error_rate``; ``evaluator_errors.<evaluator>``
    (executions an evaluator raised on, when any); for each latency
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
    for evaluator in sorted({n for r in results for n in r.evaluator_errors}):
        figures[f"evaluator_errors.{evaluator}"] = float(sum(evaluator in r.evaluator_errors for r in results))
    measured = [(r, r.metrics) for r in results]
    names = sorted({name for _, m in measured for name in m} - {"success", "error"})
    tag = f"ci{round(confidence * 100)}"
    for name in names:
        values = _values(measured, name)
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


class MissingCaseField(KeyError):
    """An evaluator asked the test case for a field it does not have."""

    def __str__(self) -> str:
        return str(self.args[0])


class _CaseView(dict):
    """The test case given to an evaluator: a missing field raises :class:`MissingCaseField`."""

    case_id: str = ""

    def __missing__(self, key: Any) -> Any:
        raise MissingCaseField(
            f"test case {self.case_id!r} has no {key!r}, which the evaluator needs. "
            f"Fix: give {key!r} in the test case (it has {sorted(self)})"
        )


def score_case(
    evaluators: Mapping[str, Callable[[Any, dict[str, Any]], Any]],
    final_state: Any,
    case: Mapping[str, Any],
    case_id: str = "",
) -> tuple[dict[str, float], dict[str, ErrorInfo]]:
    """Every evaluator's score of one execution, and the error of each evaluator that raised.

    Scores are ``{name: value}``, or ``{name.key: value}`` for an evaluator
    that returns a dict. An evaluator that raises has no score; its error is
    returned under its name instead (a case that lacks a field the evaluator
    indexes gives a :class:`MissingCaseField` naming the case and the field).
    """
    scores: dict[str, float] = {}
    errors: dict[str, ErrorInfo] = {}
    for name, evaluator in evaluators.items():
        view = _CaseView(case)
        view.case_id = case_id
        try:
            value = evaluator(final_state, view)
            if isinstance(value, Mapping):
                found = {f"{name}.{k}" if k != name else name: float(v) for k, v in value.items()}
            else:
                found = {name: float(value)}
        except Exception as exc:
            errors[name] = ErrorInfo(type(exc).__name__, str(exc), None, traceback.format_exc())
            continue
        scores.update(found)
    return scores, errors
