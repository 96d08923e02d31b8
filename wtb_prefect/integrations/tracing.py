"""Tracing integration: the batch span and one span per execution.

Node and worker spans are opened by the run layer (:mod:`wtb_prefect.run.spans`)
under the execution span registered here, so one trace covers the batch.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode

from wtb_prefect.batch.observers import BatchObserver, register_observer_factory
from wtb_prefect.run.spans import execution_span_ended, execution_span_started, recording, tracer

if TYPE_CHECKING:
    from wtb_prefect.analysis.batch_result import BatchTestResult
    from wtb_prefect.batch.plan import BatchPlan
    from wtb_prefect.results import ExecutionResult
    from wtb_prefect.run.execution import ExecutionItem

__all__ = ["TracingObserver"]


class TracingObserver(BatchObserver):
    """Opens the batch span and one execution span per execution."""

    def __init__(self) -> None:
        self._batch: Span | None = None
        self._tokens: dict[str, object] = {}
        self._lock = threading.Lock()

    def on_batch_start(self, plan: BatchPlan) -> None:
        from prefect.context import FlowRunContext

        flow_ctx = FlowRunContext.get()
        attributes: dict[str, Any] = {
            "wtb.project": plan.project.name,
            "wtb.project_version": plan.project.version,
            "wtb.batch_id": plan.batch_id,
            "wtb.variants": len(plan.variants),
            "wtb.executions": len(plan.items),
            "wtb.mode": plan.mode,
            "process.pid": os.getpid(),
        }
        if flow_ctx and flow_ctx.flow_run:
            attributes["prefect.flow_run.id"] = str(flow_ctx.flow_run.id)
        self._batch = recording(tracer().start_span("wtb.batch", attributes=attributes))

    def on_execution_start(self, plan: BatchPlan, item: ExecutionItem) -> None:
        if self._batch is None:
            return
        compiled = item.compiled
        attributes: dict[str, Any] = {
            "wtb.project": plan.project.name,
            "wtb.batch_id": plan.batch_id,
            "wtb.execution_id": item.execution_id,
            "wtb.variant": compiled.label,
            "wtb.workflow_variant": compiled.choice.workflow,
            "wtb.case_id": item.case.case_id,
            **{f"wtb.variant.{node}": name for node, name in compiled.choice.node_map.items()},
        }
        span = tracer().start_span(
            "wtb.execution", context=trace.set_span_in_context(self._batch), attributes=attributes
        )
        execution_span_started(item.execution_id, span)
        # Current in this thread too, so evaluators' and inline nodes' own spans nest here.
        token = otel_context.attach(trace.set_span_in_context(span))
        with self._lock:
            self._tokens[item.execution_id] = token

    def on_execution_end(self, plan: BatchPlan, item: ExecutionItem, result: ExecutionResult) -> None:
        span = execution_span_ended(item.execution_id)
        with self._lock:
            token = self._tokens.pop(item.execution_id, None)
        if token is not None:
            otel_context.detach(token)
        if span is None:
            return
        span.set_attribute("wtb.status", result.status)
        span.set_attribute("wtb.latency_s", result.duration_s)
        for name, value in result.scores.items():
            span.set_attribute(f"wtb.score.{name}", value)
        if result.status == "failed":
            span.set_status(Status(StatusCode.ERROR, str(result.error)))
        else:
            span.set_status(Status(StatusCode.OK))
        span.end()

    def on_batch_end(self, plan: BatchPlan, batch: BatchTestResult) -> None:
        if self._batch is None:
            return
        failed = len(batch.failed)
        self._batch.set_attribute("wtb.failed", failed)
        self._batch.set_status(
            Status(StatusCode.ERROR, f"{failed} executions failed") if failed else Status(StatusCode.OK)
        )
        ctx = self._batch.get_span_context()
        batch.tracking["trace_id"] = format(ctx.trace_id, "032x")
        self._batch.end()
        self._batch = None


def _tracing_factory(plan: BatchPlan) -> BatchObserver:
    """A tracing observer; it records nothing when the tracer provider is a no-op."""
    return TracingObserver()


register_observer_factory(_tracing_factory)
