"""OpenTelemetry spans of node runs, and the tracer provider every span of wtb_prefect uses.

Traces go batch -> execution -> node -> worker; the batch and execution spans
are opened by the tracing integration
(:mod:`wtb_prefect.integrations.tracing`), the node spans here.

Which tracer provider wtb_prefect uses, in order:

1. the one given to :func:`configure_tracing` (e.g. a test's in-memory exporter);
2. one built from the environment when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
   ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set (OTLP over HTTP) and/or
   ``WTB_TRACE_CONSOLE=1`` (spans printed to stdout);
3. otherwise OpenTelemetry's global provider: a no-op unless the application
   set one, so by default nothing is exported and spans cost next to nothing.

Node bodies on Ray workers get the node span's W3C ``traceparent`` with the
task; the worker runs the body under a child span, collects the finished spans
and ships them back with the result, and :func:`import_spans` hands them to
this process's span processors, so one trace spans every process.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from wtb_prefect.run.context import ExecutionContext, NodePlan

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

__all__ = [
    "configure_tracing",
    "end_node_span",
    "execution_span_started",
    "execution_span_ended",
    "get_tracer_provider",
    "import_spans",
    "start_node_span",
    "worker_carrier",
]

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_override: TracerProvider | None = None
_env_providers: dict[tuple[str, bool], TracerProvider] = {}
# Execution spans by execution id: node spans find their parent here even when
# LangGraph runs the node in a thread that did not inherit the OTel context.
_execution_spans: dict[str, Span] = {}


def configure_tracing(provider: TracerProvider | None = None) -> None:
    """Use ``provider`` for wtb_prefect's spans; None goes back to the environment's choice."""
    global _override
    with _lock:
        _override = provider


class _Stdout:
    """``sys.stdout`` looked up at each write, so redirections made later apply."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


def _env_provider() -> TracerProvider | None:
    endpoint = (
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or ""
    )
    # Read per node run: os.environ, not WTBSettings (building those costs milliseconds).
    console = os.environ.get("WTB_TRACE_CONSOLE", "").strip().lower() in {"1", "true", "yes", "on"}
    if not endpoint and not console:
        return None
    key = (endpoint, console)
    with _lock:
        provider = _env_providers.get(key)
        if provider is None:
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider as SDKTracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor

            provider = SDKTracerProvider(
                resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "wtb-prefect")})
            )
            if endpoint:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

                provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
            if console:
                provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=_Stdout())))
            _env_providers[key] = provider
        return provider


def get_tracer_provider() -> TracerProvider:
    """The tracer provider wtb_prefect's spans go to (see the module docstring)."""
    with _lock:
        override = _override
    return override or _env_provider() or trace.get_tracer_provider()


_tracers: dict[int, tuple[TracerProvider, trace.Tracer]] = {}


def _tracer() -> trace.Tracer:
    provider = get_tracer_provider()
    cached = _tracers.get(id(provider))
    if cached is None or cached[0] is not provider:
        from importlib.metadata import version

        cached = _tracers[id(provider)] = (provider, provider.get_tracer("wtb_prefect", version("wtb-prefect")))
    return cached[1]


def _recording(span: Span | None) -> Span | None:
    return span if span is not None and span.is_recording() else None


def _plain(value: Any) -> Any:
    """An OTel attribute value: primitives as they are, anything else as JSON."""
    if isinstance(value, (str, bool, int, float)):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def _resource_attributes(resources: Mapping[str, Any]) -> dict[str, Any]:
    return {f"wtb.resources.{k}": _plain(v) for k, v in resources.items() if v not in (None, {}, [])}


# ─── node spans (driver side) and the worker hand-off ───


def start_node_span(plan: NodePlan, ctx: ExecutionContext | None) -> Span | None:
    """Start the span of one node run, child of its execution's span; None when not recording."""
    parent_span = _execution_spans.get(ctx.execution_id) if ctx is not None else None
    parent = trace.set_span_in_context(parent_span) if parent_span is not None else None
    attributes: dict[str, Any] = {
        "wtb.node": plan.node,
        "wtb.node.implementation": plan.implementation,
        "wtb.node.version": plan.version,
        "process.pid": os.getpid(),
        **_resource_attributes(plan.resources),
    }
    if ctx is not None:
        attributes.update(
            {"wtb.execution_id": ctx.execution_id, "wtb.variant": ctx.variant_label, "wtb.case_id": ctx.case_id}
        )
    span = _tracer().start_span(f"wtb.node {plan.node}", context=parent, kind=SpanKind.INTERNAL, attributes=attributes)
    return _recording(span)


def end_node_span(span: Span | None, error: BaseException | None) -> None:
    """Set the node span's status from how the node ended, and end it."""
    if span is None:
        return
    if error is None:
        span.set_attribute("wtb.status", "completed")
        span.set_status(Status(StatusCode.OK))
    else:
        span.set_attribute("wtb.status", "failed")
        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
    span.end()


def worker_carrier(span: Span | None, name: str, attributes: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """What a Ray worker needs to open a child span of ``span``: W3C headers, a name, attributes."""
    if span is None:
        return None
    carrier: dict[str, Any] = {}
    TraceContextTextMapPropagator().inject(carrier, context=trace.set_span_in_context(span))
    carrier["name"] = name
    carrier["attributes"] = {k: _plain(v) for k, v in (attributes or {}).items()}
    return carrier


def import_spans(spans: Iterable[Mapping[str, Any]]) -> int:
    """Hand spans serialized in a worker to this process's span processors; returns how many."""
    provider = get_tracer_provider()
    processor = getattr(provider, "_active_span_processor", None)  # the SDK's processor fan-out
    if processor is None:
        return 0
    from opentelemetry.sdk.trace import Event, ReadableSpan
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.trace import SpanContext, TraceFlags

    count = 0
    for data in spans:
        flags = TraceFlags(data["trace_flags"])
        context = SpanContext(data["trace_id"], data["span_id"], is_remote=False, trace_flags=flags)
        parent = (
            SpanContext(data["trace_id"], data["parent_span_id"], is_remote=data["parent_is_remote"], trace_flags=flags)
            if data["parent_span_id"]
            else None
        )
        code, description = data["status"]
        span = ReadableSpan(
            name=data["name"],
            context=context,
            parent=parent,
            resource=getattr(provider, "resource", None),
            attributes=data["attributes"],
            events=[Event(name, attributes, timestamp) for name, timestamp, attributes in data["events"]],
            kind=SpanKind[data["kind"]],
            status=Status(StatusCode[code], description),
            start_time=data["start"],
            end_time=data["end"],
            instrumentation_scope=InstrumentationScope(*data["scope"]),
        )
        processor.on_end(span)
        count += 1
    return count


def execution_span_started(execution_id: str, span: Span) -> None:
    """Make ``span`` the parent of the node spans of execution ``execution_id``."""
    _execution_spans[execution_id] = span


def execution_span_ended(execution_id: str) -> Span | None:
    """Forget (and return) the execution span of ``execution_id``."""
    return _execution_spans.pop(execution_id, None)


def tracer() -> trace.Tracer:
    """The tracer of wtb_prefect's spans."""
    return _tracer()


def recording(span: Span | None) -> Span | None:
    """``span`` when it records, else None (a no-op provider's spans are dropped)."""
    return _recording(span)
