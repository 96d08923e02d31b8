"""The one small interface through which integrations watch a batch.

The batch calls every observer at its start, around each execution, for each
result and at its end. MLflow tracking, tracing, Prefect artifacts and file
snapshots plug in here as plugins (the ``wtb_prefect.plugins`` entry points,
see :mod:`wtb_prefect.plugins`); the core never imports them. A caller can
also watch one batch with :func:`watching` (the CLI's progress bar does). An observer that raises
is logged and ignored: an integration must never fail a batch (a regression
gate does that on purpose through its own result check, not by raising here).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, ClassVar

from wtb_prefect.plugins import load_plugins

if TYPE_CHECKING:
    from wtb_prefect.analysis.batch_result import BatchTestResult
    from wtb_prefect.batch.plan import BatchPlan
    from wtb_prefect.results import ExecutionResult, NodeRecord
    from wtb_prefect.run.execution import ExecutionItem

__all__ = [
    "BatchObserver",
    "end_batch",
    "notify",
    "observer_factories",
    "observers_for",
    "register_observer_factory",
    "watching",
]

logger = logging.getLogger(__name__)


class BatchObserver:
    """Base class of batch observers; override the callbacks you need.

    Callbacks of one batch may come from several threads at once (executions
    run concurrently); ``on_batch_start`` comes from the flow's thread. The
    observers' ``on_batch_end`` run at the same time, each in a thread of its
    own with the flow run's context (Prefect's run logger and artifacts work
    there), after the observers named in its :attr:`batch_end_after`.
    """

    batch_end_after: ClassVar[tuple[str, ...]] = ()
    """Class names of observers whose ``on_batch_end`` must have returned before this one's starts
    (the report links the batch's MLflow runs, so it follows ``MlflowObserver``)."""

    def on_batch_start(self, plan: BatchPlan) -> None:
        """Before the first execution starts."""

    def on_execution_start(self, plan: BatchPlan, item: ExecutionItem) -> None:
        """In the execution's thread, before ``graph.invoke``."""

    def on_node_end(self, plan: BatchPlan, item: ExecutionItem, record: NodeRecord) -> None:
        """In the flow process, right after a node's body returned or raised (``record.status``),
        before LangGraph checkpoints its writes; LangGraph's ``get_config()`` still works here."""

    def on_execution_end(self, plan: BatchPlan, item: ExecutionItem, result: ExecutionResult) -> None:
        """In the execution's thread, after its result (and scores) are known."""

    def on_result(self, plan: BatchPlan, result: ExecutionResult) -> None:
        """In the flow's thread, once per execution of the batch as its result is stored,
        including results of a resumed batch that an earlier run finished."""

    def on_batch_end(self, plan: BatchPlan, batch: BatchTestResult) -> None:
        """After the last execution, before the flow returns; concurrently with the other observers'."""


_factories: list[Callable[[BatchPlan], BatchObserver | None]] = []
_watchers: dict[str, list[BatchObserver]] = {}
_lock = threading.Lock()


def register_observer_factory(factory: Callable[[BatchPlan], BatchObserver | None]) -> None:
    """Add a factory called once per batch; it returns an observer, or None to stay out."""
    with _lock:
        if factory not in _factories:
            _factories.append(factory)


def observer_factories() -> list[Callable[[BatchPlan], BatchObserver | None]]:
    """The registered factories (installed plugins first), in registration order."""
    load_plugins()
    with _lock:
        return list(_factories)


@contextlib.contextmanager
def watching(batch_id: str, observer: BatchObserver) -> Iterator[None]:
    """Add ``observer`` to the batch ``batch_id`` when it runs in this process (e.g. a progress bar)."""
    with _lock:
        _watchers.setdefault(batch_id, []).append(observer)
    try:
        yield
    finally:
        with _lock:
            watchers = _watchers.get(batch_id, [])
            if observer in watchers:
                watchers.remove(observer)
            if not watchers:
                _watchers.pop(batch_id, None)


def observers_for(plan: BatchPlan) -> list[BatchObserver]:
    """The observers of one run of ``plan``: one per registered factory, then its watchers.

    A factory may refuse the plan by raising (file tracking does, for a tracked
    path that does not exist): the batch then fails before its first execution.
    """
    observers = [o for o in (factory(plan) for factory in observer_factories()) if o is not None]
    with _lock:
        observers.extend(_watchers.get(plan.batch_id, []))
    return observers


def notify(observers: list[BatchObserver], callback: str, *args: Any) -> None:
    """Call ``callback`` on every observer; log and swallow what one raises."""
    for observer in observers:
        try:
            getattr(observer, callback)(*args)
        except Exception:
            logger.exception("observer %s failed in %s", type(observer).__name__, callback)


def end_batch(observers: list[BatchObserver], plan: BatchPlan, batch: BatchTestResult) -> None:
    """Call every observer's ``on_batch_end`` and return when all have returned.

    They run concurrently, each in the flow run's context: recording a batch
    mostly waits (on the Prefect API, which is still recording the batch's
    task runs, and on the MLflow store), and the flow run should not wait for
    the sum of those waits. An observer starts after those its
    ``batch_end_after`` names; one that raises is logged and ignored, and
    those that follow it still run.
    """
    if len(observers) < 2:
        notify(observers, "on_batch_end", plan, batch)
        return
    started: dict[str, list[Future[None]]] = {}

    def end(observer: BatchObserver, after: list[Future[None]], context: contextvars.Context) -> None:
        for future in after:
            future.result()  # notify logs and swallows what an observer raises
        context.run(notify, [observer], "on_batch_end", plan, batch)

    with ThreadPoolExecutor(max_workers=len(observers), thread_name_prefix="wtb-batch-end") as pool:
        # Submitted in dependency order (a name not yet seen is not waited for): no cycle can deadlock.
        for observer in _after_first(observers):
            after = [f for name in observer.batch_end_after for f in started.get(name, [])]
            future = pool.submit(end, observer, after, contextvars.copy_context())
            started.setdefault(type(observer).__name__, []).append(future)


def _after_first(observers: list[BatchObserver]) -> list[BatchObserver]:
    """``observers``, each after those its ``batch_end_after`` names (otherwise in their order)."""
    ordered: list[BatchObserver] = []
    pending = list(observers)
    while pending:
        waiting = {id(o) for o in pending if {type(p).__name__ for p in pending if p is not o} & set(o.batch_end_after)}
        ready = [o for o in pending if id(o) not in waiting] or pending[:1]  # a cycle: broken in their order
        for observer in ready:
            pending.remove(observer)
            ordered.append(observer)
    return ordered
