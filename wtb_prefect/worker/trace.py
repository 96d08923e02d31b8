"""OpenTelemetry inside a Ray worker: a child span of the driver's node span,
collected in the worker and shipped back with the result.

Imported only when the driver traces (it sent a ``traceparent``), so workers
of untraced runs never import the OpenTelemetry SDK.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import sys
import threading
from collections.abc import Iterator
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from wtb_prefect.worker.ray_private import in_worker_process

_lock = threading.Lock()
_sinks: dict[int, list[dict[str, Any]]] = {}
_provider: TracerProvider | None = None
_HOST = socket.gethostname()


class _Collector(SpanProcessor):
    """Hands every finished span of a traced call to that call's sink."""

    def on_end(self, span: ReadableSpan) -> None:
        with _lock:
            sink = _sinks.get(span.context.trace_id) if span.context else None
        if sink is not None:
            sink.append(serialize_span(span))


def _worker_provider() -> TracerProvider:
    global _provider
    with _lock:
        if _provider is None:
            _provider = TracerProvider(shutdown_on_exit=False)
            _provider.add_span_processor(_Collector())
            # Spans the node body makes with the global API (its own or an
            # instrumented library's) nest under the worker span and travel too.
            if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
                trace.set_tracer_provider(_provider)
        return _provider


@functools.lru_cache(maxsize=1)
def _worker_tracer(provider: TracerProvider) -> trace.Tracer:
    return provider.get_tracer("wtb_prefect.worker")


def serialize_span(span: ReadableSpan) -> dict[str, Any]:
    """A finished span as plain picklable data (see ``tracing.import_spans``)."""
    ctx = span.context
    parent = span.parent
    scope = span.instrumentation_scope
    return {
        "name": span.name,
        "trace_id": ctx.trace_id,
        "span_id": ctx.span_id,
        "trace_flags": int(ctx.trace_flags),
        "parent_span_id": parent.span_id if parent else None,
        "parent_is_remote": bool(parent.is_remote) if parent else False,
        "kind": span.kind.name,
        "start": span.start_time,
        "end": span.end_time,
        "attributes": dict(span.attributes or {}),
        "events": [(e.name, e.timestamp, dict(e.attributes or {})) for e in span.events],
        "status": (span.status.status_code.name, span.status.description),
        "scope": (scope.name, scope.version) if scope else ("wtb_prefect.worker", None),
    }


def _worker_attributes() -> dict[str, Any]:
    attributes: dict[str, Any] = {"process.pid": os.getpid(), "host.name": _HOST}
    ray = sys.modules.get("ray")
    try:
        # Only inside a Ray worker: anywhere else get_runtime_context() would
        # connect to a cluster, and its worker methods only warn.
        if ray is None or not ray.is_initialized():
            return attributes
        if not in_worker_process(ray):
            return attributes
        rt = ray.get_runtime_context()
        attributes["ray.node_id"] = rt.get_node_id()
        attributes["ray.worker_id"] = rt.get_worker_id()
        task_id = rt.get_task_id()
        if task_id:
            attributes["ray.task_id"] = task_id
    except Exception:  # not in a Ray worker (a direct call in tests)
        pass
    return attributes


@contextlib.contextmanager
def worker_span(carrier: dict[str, Any], sink: list[dict[str, Any]]) -> Iterator[None]:
    """Run the body under a child span of the carrier's ``traceparent``; spans go to ``sink``."""
    provider = _worker_provider()
    parent = TraceContextTextMapPropagator().extract(carrier)
    trace_id = trace.get_current_span(parent).get_span_context().trace_id
    with _lock:
        _sinks[trace_id] = sink
    try:
        tracer = _worker_tracer(provider)
        attributes = {**carrier.get("attributes", {}), **_worker_attributes()}
        with tracer.start_as_current_span(carrier.get("name", "wtb.worker"), context=parent, attributes=attributes):
            yield
    finally:
        with _lock:
            if _sinks.get(trace_id) is sink:
                del _sinks[trace_id]
