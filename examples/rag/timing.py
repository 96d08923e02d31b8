"""Report a node's own compute time, so the comparison shows what each variant costs
apart from dispatch (Prefect task run, Ray round trip)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from wtb_prefect import log_node_metrics

__all__ = ["compute_time"]


@contextlib.contextmanager
def compute_time() -> Iterator[None]:
    """Report the time spent in the ``with`` block as the node metric ``compute_ms``."""
    start = time.perf_counter()
    try:
        yield
    finally:
        log_node_metrics(compute_ms=1000 * (time.perf_counter() - start))
