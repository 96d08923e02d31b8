"""Cost of wtb_prefect's observability per node run, in-process (no Ray, no Prefect).

Prints medians of: a bare body call (the baseline), the worker wrapper with
node metrics (``call_observed``), the driver's node scope with tracing off,
and the full traced path (driver node span, W3C carrier, worker span collected
and serialized, shipped spans imported into an in-memory exporter). Ratios are
against the bare call measured in the same run; absolute figures on a shared
2-core machine are noise, the added microseconds are what to read.

Run: .venv/bin/python benchmarks/observability.py
"""

from __future__ import annotations

import statistics
import time
from types import SimpleNamespace

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from wtb_prefect import log_node_metrics
from wtb_prefect.run import spans as tracing
from wtb_prefect.run.node_scope import absorb_worker_extras, current_node_scope, observe_node
from wtb_prefect.worker.call import call, call_observed

ROUNDS, CALLS = 7, 2000


def body(state: dict) -> dict:
    log_node_metrics(tokens=3)
    return {"y": state["x"] + 1}


PLAN = SimpleNamespace(node="n", implementation="bench.body", version="abc", resources={"num_cpus": 0.25})


def worker_path(state: dict, config: dict) -> dict:
    """What the task runner does around a Ray call, without Ray."""
    scope = current_node_scope()
    carrier = scope.carrier() if scope is not None else None
    result, extras = call_observed(body, (state,), {}, carrier)
    absorb_worker_extras(extras)
    return result


def median_us(fn, *args) -> float:
    samples = []
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        for _ in range(CALLS):
            fn(*args)
        samples.append((time.perf_counter() - t0) / CALLS * 1e6)
    return statistics.median(samples)


def main() -> None:
    state = {"x": 1}
    tracing.configure_tracing(None)  # the default: no exporter
    bare = median_us(call, body, (state,), {})
    observed = median_us(call_observed, body, (state,), {}, None)
    untraced = median_us(observe_node(PLAN, worker_path), state, {})
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracing.configure_tracing(provider)
    traced = median_us(observe_node(PLAN, worker_path), state, {})
    tracing.configure_tracing(None)
    print(f"bare body call                  {bare:8.1f} us  (baseline)")
    for name, value in [
        ("worker wrapper + metrics", observed),
        ("node scope, tracing off", untraced),
        ("node + worker spans, shipped", traced),
    ]:
        print(f"{name:31s} {value:8.1f} us  ({value / bare:5.1f}x, +{value - bare:.1f} us per node)")


if __name__ == "__main__":
    main()
