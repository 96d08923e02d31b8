"""The one small interface through which integrations watch a batch.

The engine calls every observer of a batch at its start, around each
execution and at its end. MLflow tracking, tracing, progress bars and file
snapshots plug in here; the core never imports them. An observer that raises
is logged and ignored: an integration must never fail a batch (a regression
gate does that on purpose through its own result check, not by raising here).
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .engine import BatchPlan, ExecutionItem
    from .results import BatchTestResult, ExecutionResult, NodeRecord

__all__ = ["BatchObserver", "notify", "observer_factories", "register_observer_factory"]

logger = logging.getLogger(__name__)


class BatchObserver:
    """Base class of batch observers; override the callbacks you need.

    Callbacks of one batch may come from several threads at once (executions
    run concurrently); ``on_batch_start`` and ``on_batch_end`` come from the
    flow's thread.
    """

    def on_batch_start(self, plan: BatchPlan) -> None:
        """Before the first execution starts."""

    def on_execution_start(self, plan: BatchPlan, item: ExecutionItem) -> None:
        """In the execution's thread, before ``graph.invoke``."""

    def on_node_end(self, plan: BatchPlan, item: ExecutionItem, record: NodeRecord) -> None:
        """In the flow process, right after a node's body returned or raised (``record.status``),
        before LangGraph checkpoints its writes; LangGraph's ``get_config()`` still works here."""

    def on_execution_end(self, plan: BatchPlan, item: ExecutionItem, result: ExecutionResult) -> None:
        """In the execution's thread, after its result (and scores) are known."""

    def on_batch_end(self, plan: BatchPlan, batch: BatchTestResult) -> None:
        """After the last execution, before the flow returns."""


_factories: list[Callable[[BatchPlan], BatchObserver | None]] = []
_lock = threading.Lock()
# Integrations that register their observer factory when imported; imported on
# the first batch, never by Ray workers or a bare ``import wtb_prefect``.
_BUILTIN = ("wtb_prefect.tracing", "wtb_prefect.mlflow_tracking", "wtb_prefect.comparison", "wtb_prefect.files")
_builtins_loaded = False
_load_lock = threading.Lock()


def _load_builtins() -> None:
    global _builtins_loaded
    with _load_lock:
        if _builtins_loaded:
            return
        for module in _BUILTIN:
            try:
                importlib.import_module(module)
            except Exception:
                logger.exception("integration %s could not be loaded; batches run without it", module)
        _builtins_loaded = True


def register_observer_factory(factory: Callable[[BatchPlan], BatchObserver | None]) -> None:
    """Add a factory called once per batch; it returns an observer, or None to stay out."""
    with _lock:
        if factory not in _factories:
            _factories.append(factory)


def observer_factories() -> list[Callable[[BatchPlan], BatchObserver | None]]:
    """The registered factories (built-in integrations first), in registration order."""
    _load_builtins()
    with _lock:
        return list(_factories)


def notify(observers: list[BatchObserver], callback: str, *args: Any) -> None:
    """Call ``callback`` on every observer; log and swallow what one raises."""
    for observer in observers:
        try:
            getattr(observer, callback)(*args)
        except Exception:
            logger.exception("observer %s failed in %s", type(observer).__name__, callback)
