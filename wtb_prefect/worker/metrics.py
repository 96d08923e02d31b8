"""Metrics a node reports about itself (tokens, cost, cache hits, ...).

Call :func:`log_node_metrics` anywhere inside a node's body, on a Ray worker
or in the flow process::

    from wtb_prefect import log_node_metrics

    def generator(state):
        reply = llm.invoke(state.query)
        log_node_metrics(tokens=reply.usage.total_tokens, cost=reply.usage.cost_usd)
        return {"answer": reply.text}

The values land on the node's :class:`~wtb_prefect.results.NodeRecord`
(``metrics``), on the execution (``ExecutionResult.metrics`` as
``node.<node>.<name>`` and ``total.<name>``) and, aggregated over test cases,
in the MLflow run of the variant combination. Values of the same name reported
twice in one node run add up. Outside a WTB node run the call does nothing, so
the same node function still runs under plain ``graph.invoke``.

This module is imported inside Ray workers: keep it free of heavy imports.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import numbers
from collections.abc import Iterator

__all__ = ["collecting_node_metrics", "log_node_metrics"]

_collector: contextvars.ContextVar[dict[str, float] | None] = contextvars.ContextVar("wtb_node_metrics", default=None)


def log_node_metrics(**metrics: float) -> None:
    """Record numeric metrics of the node run in progress (summed per name).

    Raises:
        TypeError: a value is not a real number (e.g. a string or None).
        ValueError: a value is NaN or infinite.
    """
    for name, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"log_node_metrics({name}=...): give a number, not {type(value).__name__}")
        if not math.isfinite(float(value)):
            raise ValueError(f"log_node_metrics({name}=...): {value} is not a finite number")
    sink = _collector.get()
    if sink is None:
        return
    for name, value in metrics.items():
        sink[name] = sink.get(name, 0.0) + float(value)


@contextlib.contextmanager
def collecting_node_metrics(sink: dict[str, float] | None = None) -> Iterator[dict[str, float]]:
    """Collect what :func:`log_node_metrics` reports in this context into ``sink``."""
    sink = {} if sink is None else sink
    token = _collector.set(sink)
    try:
        yield sink
    finally:
        _collector.reset(token)
