"""What surrounds one node run in the flow process: its span and its metrics.

``dispatch`` wraps every node callable with :func:`observe_node`. Inside, the
node's span is open and a metrics collector is current; the task runner
(running in a copy of this context) reads :func:`current_node_scope` to send
the span's W3C trace context to the Ray worker, and :func:`absorb_worker_extras`
brings the worker's metrics and spans back into this scope. The dispatcher
reads the collected metrics with :func:`current_node_metrics` when it writes
the node's record.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from wtb_prefect.run.context import NodePlan, current_execution
from wtb_prefect.run.spans import end_node_span, import_spans, start_node_span, worker_carrier
from wtb_prefect.worker.metrics import collecting_node_metrics
from wtb_prefect.worker.usage import add_usage, capturing_usage

if TYPE_CHECKING:
    from opentelemetry.trace import Span

__all__ = [
    "NodeScope",
    "absorb_worker_extras",
    "current_node_lane",
    "current_node_usage",
    "current_node_metrics",
    "current_node_run_s",
    "current_node_scope",
    "observe_node",
]


@dataclass
class NodeScope:
    """The open span and the metrics of one node run."""

    plan: NodePlan
    span: Span | None
    metrics: dict[str, float] = field(default_factory=dict)
    run_s: float | None = None
    """Seconds the body ran in Ray workers (summed over attempts); None until a worker reports."""
    lane: dict[str, Any] = field(default_factory=dict)
    """Where the body ran and why (``lane``, ``lane_reason``), and ``rate_limited`` answers absorbed."""
    usage: dict[str, dict[str, int]] = field(default_factory=dict)
    """Tokens of the body's chat-model calls per model (from its workers, or captured here when it ran here)."""
    saved_usage: dict[str, dict[str, int]] = field(default_factory=dict)
    """For a reused call: the usage of the call it reused."""

    def carrier(self, attributes: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
        """The trace context a worker needs for a child span of this node; None when untraced."""
        return worker_carrier(
            self.span, f"wtb.worker {self.plan.node}", {"wtb.node": self.plan.node, **(attributes or {})}
        )


_scope: contextvars.ContextVar[NodeScope | None] = contextvars.ContextVar("wtb_node_scope", default=None)


def current_node_scope() -> NodeScope | None:
    """The node run whose body is being dispatched in this context, if any."""
    return _scope.get()


def current_node_metrics() -> dict[str, float]:
    """A copy of the metrics reported so far by the node run of this context."""
    scope = _scope.get()
    return dict(scope.metrics) if scope is not None else {}


def current_node_run_s() -> float | None:
    """Seconds the body of this context's node run ran in Ray workers; None when it did not run on Ray."""
    scope = _scope.get()
    return scope.run_s if scope is not None else None


def current_node_usage() -> tuple[dict[str, dict[str, int]], dict[str, dict[str, int]]]:
    """Copies of this context's node run's usage and saved usage (per model)."""
    scope = _scope.get()
    if scope is None:
        return {}, {}
    return ({m: dict(c) for m, c in scope.usage.items()}, {m: dict(c) for m, c in scope.saved_usage.items()})


def current_node_lane() -> dict[str, Any]:
    """``lane``, ``lane_reason`` and ``rate_limited`` of this context's node run (empty when it did not run on Ray)."""
    scope = _scope.get()
    return dict(scope.lane) if scope is not None else {}


def absorb_worker_extras(extras: Mapping[str, Any] | None) -> None:
    """Merge what a worker sent back (run time, metrics, spans) into the current node run."""
    if not extras:
        return
    scope = _scope.get()
    if scope is not None:
        if extras.get("lane") is not None:
            scope.lane["lane"], scope.lane["lane_reason"] = extras["lane"], extras.get("lane_reason", "")
            scope.lane["rate_limited"] = scope.lane.get("rate_limited", 0) + int(extras.get("rate_limited", 0))
        if extras.get("run_s") is not None:
            scope.run_s = (scope.run_s or 0.0) + float(extras["run_s"])
        for name, value in (extras.get("metrics") or {}).items():
            scope.metrics[name] = scope.metrics.get(name, 0.0) + float(value)
        if extras.get("usage"):
            add_usage(scope.usage, extras["usage"])
    spans = extras.get("spans")
    if spans:
        import_spans(spans)


def observe_node(plan: NodePlan, dispatched: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a node's dispatching callable with its span and metrics collection."""

    @functools.wraps(dispatched)
    def observed(state: Any, config: Any) -> Any:
        span = start_node_span(plan, current_execution())
        scope = NodeScope(plan, span)
        token = _scope.set(scope)
        try:
            # a body that runs in this process (outside a flow, or not on Ray) books its model calls here
            with collecting_node_metrics(scope.metrics), capturing_usage(scope.usage):
                output = dispatched(state, config)
        except BaseException as exc:
            end_node_span(span, exc)
            raise
        finally:
            _scope.reset(token)
        if span is not None and scope.metrics:
            for name, value in scope.metrics.items():
                span.set_attribute(f"wtb.metric.{name}", value)
        end_node_span(span, None)
        return output

    return observed
