"""Code that runs inside Ray workers. Kept free of heavy imports on purpose:
every new worker imports this module to unpickle the task body, and
importing Prefect there would slow the start of every worker.

Two ways a node body runs here:

- :func:`call_observed`, the function of a Ray task (one task per node call,
  the lane of CPU-bound nodes);
- :class:`NodeLane`, a long-lived async actor that runs many calls at once
  (the I/O lane: ``async def`` bodies on its event loop, sync bodies marked
  ``io_bound`` on its threads); see ``wtb_prefect.run.lanes``.

Both time the body (``run_s``) and enforce the node's timeout on the body's
own run time, so waiting for a worker or for resources never spends it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import functools
import inspect
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from wtb_prefect.worker.rate_limit import rate_limited

EXTRAS_ATTR = "_wtb_extras"
COROUTINE_ATTR = "_wtb_coroutine"
"""Set on the sync form of an ``async def`` node body (:class:`AsyncBody`): the coroutine function itself."""


class AsyncBody:
    """The sync form of an ``async def`` node body: each call runs the coroutine to completion.

    An I/O lane's actor awaits the coroutine function (``COROUTINE_ATTR``)
    instead. A class at module level rather than a closure, so that it
    pickles by reference with its function: a closure is pickled by value,
    on every node call, which cost the driver a tenth of its CPU per call.
    """

    def __init__(self, afunc: Callable[..., Any]) -> None:
        functools.update_wrapper(self, afunc)  # name, docstring, __wrapped__ (signature, implementation)
        setattr(self, COROUTINE_ATTR, afunc)

    def __call__(self, state: Any, **kwargs: Any) -> Any:
        return run_coroutine(self.__wrapped__(state, **kwargs))


_loop: asyncio.AbstractEventLoop | None = None
_loop_thread: threading.Thread | None = None
_loop_lock = threading.Lock()


def _process_loop() -> asyncio.AbstractEventLoop:
    """This process's event loop for async node bodies, started on first use in a daemon thread.

    One loop for the life of the process, not one per call: LLM clients
    (``ChatOpenAI``'s shared ``httpx.AsyncClient`` among them) keep
    connections bound to the loop that opened them, and a per-call
    ``asyncio.run`` closes that loop, so the next call fails with "Event
    loop is closed".
    """
    global _loop, _loop_thread
    with _loop_lock:
        if _loop is None or _loop.is_closed() or _loop_thread is None or not _loop_thread.is_alive():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="wtb-async-bodies", daemon=True)
            thread.start()
            _loop, _loop_thread = loop, thread
        return _loop


def run_coroutine(coro: Any) -> Any:
    """Run ``coro`` to completion on the process's event loop and return its result (blocking).

    It runs in a copy of the caller's context (as ``asyncio.run`` would), so
    context variables such as the node's usage capture reach it. If the
    caller is interrupted (the node's timeout), the coroutine is cancelled.
    Called from that loop's own thread, it runs on a fresh loop in a helper
    thread instead (waiting there would deadlock the loop).
    """
    loop = _process_loop()
    if threading.current_thread() is _loop_thread:
        with ThreadPoolExecutor(1) as helper:
            return helper.submit(contextvars.copy_context().run, asyncio.run, coro).result()
    context = contextvars.copy_context()
    done: concurrent.futures.Future[Any] = concurrent.futures.Future()
    started: list[asyncio.Task[Any]] = []

    def finish(task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            done.cancel()
        elif task.exception() is not None:
            done.set_exception(task.exception())  # type: ignore[arg-type]
        else:
            done.set_result(task.result())

    def start() -> None:
        try:
            task = loop.create_task(coro, context=context)
        except BaseException as exc:  # noqa: BLE001 (handed to the waiting caller)
            done.set_exception(exc)
            return
        started.append(task)
        task.add_done_callback(finish)

    loop.call_soon_threadsafe(start)
    try:
        return done.result()
    except BaseException:
        if started and not started[0].done():
            loop.call_soon_threadsafe(started[0].cancel)
        raise


def call(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Call ``fn`` with ``args`` and ``kwargs``; run it to completion if it is a coroutine."""
    result = fn(*args, **kwargs)
    if inspect.iscoroutine(result):
        result = run_coroutine(result)
    return result


TIMED_OUT = "__wtb_timed_out__"
"""What :meth:`NodeLane.call` returns in place of a result when the body overran its timeout."""


class NodeTimeout(TimeoutError):
    """The node's body ran longer than its timeout (its own run time)."""


def _timeout_error(fn: Any, timeout: float) -> TimeoutError:
    name = getattr(fn, "__name__", None) or getattr(getattr(fn, "fn", None), "__name__", "node")
    return NodeTimeout(f"{name} ran longer than its timeout of {timeout}s (its own run time, not the wait to start)")


@contextlib.contextmanager
def _alarm(fn: Any, timeout: float | None) -> Iterator[None]:
    """Raise ``TimeoutError`` in this (main) thread once the body has run ``timeout`` seconds.

    A Ray task runs in its worker's main thread, so a ``SIGALRM`` interrupts
    the body (a sleep, a socket wait, Python code) wherever it is. Elsewhere
    (a thread, or no timeout) this does nothing and the driver's backstop
    applies.
    """
    if not timeout or threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGALRM"):
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise _timeout_error(fn, timeout)

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _with_extras(exc: BaseException, extras: dict[str, Any]) -> None:
    try:
        setattr(exc, EXTRAS_ATTR, extras)
    except Exception:  # an exception type that refuses attributes: lose the extras, keep the error
        pass


class StartDeadlineExceeded(TimeoutError):
    """The call reached its worker after its ``start_by`` time: the body was not run."""


def call_observed(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    trace_carrier: dict[str, Any] | None = None,
    timeout: float | None = None,
    start_by: float | None = None,
) -> tuple[Any, dict[str, Any]]:
    """:func:`call` that also returns what the body reported: ``(result, extras)``.

    ``extras`` holds ``metrics`` (from :func:`wtb_prefect.log_node_metrics`),
    ``usage`` (tokens of the chat-model calls the body made, per model: see
    :mod:`wtb_prefect.worker.usage`),
    ``spans`` (finished OpenTelemetry spans of this call, serialized, when
    ``trace_carrier`` holds a W3C ``traceparent``: the worker has no exporter
    of the driver, so its spans travel back with the result), ``started_at``
    (wall clock when the body started) and ``run_s`` (the body's own run
    time). When the body raises, the same extras ride on the exception as
    ``_wtb_extras``. With ``timeout``, a body still running after that many
    seconds of its own run time raises ``TimeoutError``. A call that reaches
    the worker after ``start_by`` (wall clock) raises
    :class:`StartDeadlineExceeded` without running the body.
    """
    from wtb_prefect.worker.metrics import collecting_node_metrics
    from wtb_prefect.worker.usage import capturing_usage

    if start_by is not None and time.time() > start_by:
        raise StartDeadlineExceeded(f"started {time.time() - start_by:.1f}s after its start_by time")

    metrics: dict[str, float] = {}
    usage: dict[str, dict[str, int]] = {}
    spans: list[dict[str, Any]] = []
    started_at = time.time()
    t0 = time.perf_counter()
    c0 = time.process_time()  # a Ray task runs one call per process: the CPU its threads spent, for lane choice
    try:
        with collecting_node_metrics(metrics), capturing_usage(usage), _alarm(fn, timeout):
            if trace_carrier and trace_carrier.get("traceparent"):
                from wtb_prefect.worker.trace import worker_span

                with worker_span(trace_carrier, spans):
                    result = call(fn, args, kwargs)
            else:
                result = call(fn, args, kwargs)
    except BaseException as exc:
        extras = {"metrics": metrics, "spans": spans, "started_at": started_at, "run_s": time.perf_counter() - t0}
        extras["cpu_s"] = time.process_time() - c0
        extras["usage"] = usage  # calls made before the body failed were paid for
        limited = rate_limited(exc)  # the client's 429 error may not unpickle in the driver: send ours
        if limited is not None and limited is not exc:
            _with_extras(limited, extras)
            raise limited from None
        _with_extras(exc, extras)
        raise
    extras = {"metrics": metrics, "spans": spans, "started_at": started_at, "run_s": time.perf_counter() - t0}
    extras["cpu_s"] = time.process_time() - c0
    extras["usage"] = usage
    return result, extras


async def _within(awaitable: Any, fn: Any, timeout: float | None) -> Any:
    """Await ``awaitable``; past ``timeout`` seconds raise the node's ``TimeoutError``.

    A ``TimeoutError`` the body raises itself passes through unchanged.
    """
    try:
        async with asyncio.timeout(timeout) as scope:
            return await awaitable
    except TimeoutError:
        if scope.expired():
            raise _timeout_error(fn, timeout or 0) from None
        raise


def _coroutine_body(fn: Any) -> tuple[Callable[..., Any] | None, str | None]:
    """The coroutine function of an ``async def`` node body and its workspace, if ``fn`` is one."""
    path = None
    if type(fn).__name__ == "WorkspaceBound":
        path, fn = fn.path, fn.fn
    coro = getattr(fn, COROUTINE_ATTR, None)
    if coro is None and inspect.iscoroutinefunction(fn):
        coro = fn
    return coro, path


class NodeLane:
    """A Ray actor running many node calls at once (wrap with ``ray.remote``).

    ``async def`` bodies run on the actor's event loop; sync bodies run on
    its threads (``max_threads``, at least the calls it may hold at once), so
    a body that waits on the network never holds up the others. Each call
    is timed and its timeout counts from the body's start. A sync body that
    overruns its timeout cannot be stopped (Python threads cannot be killed):
    the call fails with ``TimeoutError`` and the thread finishes on its own.
    """

    def __init__(self, max_threads: int) -> None:
        self._threads = ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="wtb-lane")

    async def ready(self, bodies: list[Any]) -> int:
        """Nothing to do: unpickling ``bodies`` has imported their modules. Returns the pid."""
        return os.getpid()

    async def call(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        trace_carrier: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> tuple[Any, dict[str, Any]]:
        """Run one node call; same contract as :func:`call_observed`.

        A body that overruns its timeout returns ``(TIMED_OUT, extras)`` with
        the message in ``extras["error"]``: a value, so its timing reaches the
        driver however Ray carries errors from async actors.
        """
        try:
            return await self._call(fn, args, kwargs, trace_carrier, timeout)
        except NodeTimeout as exc:
            return TIMED_OUT, {**(getattr(exc, EXTRAS_ATTR, None) or {}), "error": str(exc)}

    async def _call(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        trace_carrier: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> tuple[Any, dict[str, Any]]:
        """Run one node call; same contract as :func:`call_observed`."""
        coro, path = _coroutine_body(fn)
        if coro is not None:
            return await self._call_async(coro, path, args, kwargs, trace_carrier, timeout)
        loop = asyncio.get_running_loop()
        ctx = contextvars.copy_context()
        started_at, t0 = time.time(), time.perf_counter()
        future = loop.run_in_executor(self._threads, ctx.run, call_observed, fn, args, kwargs, trace_carrier)
        try:
            return await _within(future, fn, timeout)
        except TimeoutError as exc:  # the body overran: it keeps its thread, the call ends here
            _with_extras(exc, {"metrics": {}, "spans": [], "started_at": started_at, "run_s": time.perf_counter() - t0})
            raise

    async def _call_async(
        self,
        coro: Callable[..., Any],
        path: str | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        trace_carrier: dict[str, Any] | None,
        timeout: float | None,
    ) -> tuple[Any, dict[str, Any]]:
        from wtb_prefect.worker.metrics import collecting_node_metrics
        from wtb_prefect.worker.usage import capturing_usage
        from wtb_prefect.worker.workspace import use_workspace

        metrics: dict[str, float] = {}
        usage: dict[str, dict[str, int]] = {}
        spans: list[dict[str, Any]] = []
        started_at = time.time()
        t0 = time.perf_counter()
        token = use_workspace(path) if path else None
        try:
            with collecting_node_metrics(metrics), capturing_usage(usage), contextlib.ExitStack() as stack:
                if trace_carrier and trace_carrier.get("traceparent"):
                    from wtb_prefect.worker.trace import worker_span

                    stack.enter_context(worker_span(trace_carrier, spans))
                result = await _within(coro(*args, **kwargs), coro, timeout)
        except BaseException as exc:
            extras = {"metrics": metrics, "spans": spans, "started_at": started_at, "run_s": time.perf_counter() - t0}
            extras["usage"] = usage
            limited = rate_limited(exc)  # the client's 429 error may not unpickle in the driver: send ours
            if limited is not None and limited is not exc:
                _with_extras(limited, extras)
                raise limited from None
            _with_extras(exc, extras)
            raise
        finally:
            if token is not None:
                from wtb_prefect.worker.workspace import _workspace

                _workspace.reset(token)
        run_s = time.perf_counter() - t0
        return result, {"metrics": metrics, "spans": spans, "started_at": started_at, "run_s": run_s, "usage": usage}
