"""Code that runs inside Ray workers. Kept free of heavy imports on purpose:
every new worker imports this module to unpickle the task body, and on a
2-core machine importing Prefect there would cost seconds per worker.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from typing import Any

EXTRAS_ATTR = "_wtb_extras"


def call(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Call ``fn`` with ``args`` and ``kwargs``; run it to completion if it is a coroutine."""
    result = fn(*args, **kwargs)
    if inspect.iscoroutine(result):
        import asyncio

        result = asyncio.run(result)
    return result


def call_observed(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    trace_carrier: dict[str, Any] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """:func:`call` that also returns what the body reported: ``(result, extras)``.

    ``extras`` holds ``run_s`` (seconds the body ran here, without the wait
    for this worker), ``metrics`` (from :func:`wtb_prefect.log_node_metrics`)
    and ``spans`` (finished OpenTelemetry spans of this call, serialized, when
    ``trace_carrier`` holds a W3C ``traceparent``: the worker has no exporter
    of the driver, so its spans travel back with the result). When the body
    raises, the same extras ride on the exception as ``_wtb_extras``.
    """
    from wtb_prefect.worker.metrics import collecting_node_metrics

    metrics: dict[str, float] = {}
    spans: list[dict[str, Any]] = []
    started = time.perf_counter()
    try:
        with collecting_node_metrics(metrics):
            if trace_carrier and trace_carrier.get("traceparent"):
                from wtb_prefect.worker.trace import worker_span

                with worker_span(trace_carrier, spans):
                    started = time.perf_counter()
                    result = call(fn, args, kwargs)
            else:
                started = time.perf_counter()
                result = call(fn, args, kwargs)
    except BaseException as exc:
        try:
            setattr(exc, EXTRAS_ATTR, {"metrics": metrics, "spans": spans, "run_s": time.perf_counter() - started})
        except Exception:  # an exception type that refuses attributes: lose the extras, keep the error
            pass
        raise
    return result, {"metrics": metrics, "spans": spans, "run_s": time.perf_counter() - started}
