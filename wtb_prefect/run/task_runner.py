"""The Prefect task runner that runs task bodies on Ray with per-task resources."""

from __future__ import annotations

import copy
import functools
import json
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from prefect.futures import PrefectConcurrentFuture
from prefect.task_runners import ThreadPoolTaskRunner
from prefect_ray.context import RemoteOptionsContext

from wtb_prefect.worker.call import EXTRAS_ATTR
from wtb_prefect.worker.call import call_observed as _call

__all__ = ["WTBRayTaskRunner"]

_remote_lock = threading.Lock()
_remote_calls: dict[str, Any] = {}


def _remote_call(options: dict[str, Any]) -> Any:
    """One ``ray.remote`` function per distinct set of options, built once."""
    import ray

    key = json.dumps(options, sort_keys=True, default=repr)
    with _remote_lock:
        remote = _remote_calls.get(key)
        if remote is None:
            remote = ray.remote(**options)(_call) if options else ray.remote(_call)
            _remote_calls[key] = remote
        return remote


def run_on_ray(fn: Callable[..., Any], options: dict[str, Any], timeout: float | None) -> Callable[..., Any]:
    """Wrap ``fn`` so that each call runs as a Ray task with ``options`` and waits for it.

    The user's exception comes back as itself (Ray's ``RayTaskError`` is an
    instance of the original exception class); a call that outlives
    ``timeout`` seconds is cancelled on Ray and raises ``TimeoutError``.
    """

    remote = _remote_call(options)

    @functools.wraps(fn)
    def on_ray(*args: Any, **kwargs: Any) -> Any:
        from wtb_prefect.run.node_scope import absorb_worker_extras, current_node_scope
        from wtb_prefect.services.ray_cluster import connect_ray

        connect_ray()  # no-op once connected
        scope = current_node_scope()
        carrier = scope.carrier(_task_run_attributes()) if scope is not None else None
        ref = remote.remote(fn, args, kwargs, carrier)
        try:
            result, extras = _wait(ref, fn, options, timeout)
        except Exception as exc:
            cause = getattr(exc, "cause", None)
            absorb_worker_extras(getattr(exc, EXTRAS_ATTR, None) or getattr(cause, EXTRAS_ATTR, None))
            raise
        absorb_worker_extras(extras)
        return result

    return on_ray


_FEASIBILITY_CHECK_S = 2.0
"""How often a call that has not finished checks that some alive Ray node can still run it."""


def _wait(ref: Any, fn: Callable[..., Any], options: dict[str, Any], timeout: float | None) -> Any:
    """``ray.get(ref)`` within ``timeout``, failing when no alive node can run the task any more.

    Ray re-runs a task whose node died on another node, and queues it forever
    when no node offers its resources (for example a custom resource that only
    the lost node had).

    Raises:
        TimeoutError: the call outlived ``timeout`` (it is cancelled on Ray).
        ResourceUnsatisfiableError: no alive node can run it (it is cancelled on Ray).
    """
    import ray

    from wtb_prefect.errors import ResourceUnsatisfiableError
    from wtb_prefect.services.ray_cluster import unsatisfiable_reason

    name = getattr(fn, "__name__", "task")
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        step = _FEASIBILITY_CHECK_S if deadline is None else min(_FEASIBILITY_CHECK_S, deadline - time.monotonic())
        try:
            return ray.get(ref, timeout=max(step, 0.0))
        except ray.exceptions.GetTimeoutError:
            pass
        if deadline is not None and time.monotonic() >= deadline:
            ray.cancel(ref, force=True)
            raise TimeoutError(f"{name} did not finish within {timeout}s") from None
        reason = unsatisfiable_reason(options)
        if reason is not None:
            ray.cancel(ref, force=True)
            raise ResourceUnsatisfiableError(
                f"node {name!r} cannot run: {reason}. Ray would queue it forever. Fix: give the cluster a "
                "node with that resource again and resume the execution, or lower the node's request"
            )


def _task_run_attributes() -> dict[str, Any]:
    """The Prefect task run (and attempt) this call belongs to, for the worker's span."""
    from prefect.context import TaskRunContext

    ctx = TaskRunContext.get()
    if ctx is None or ctx.task_run is None:
        return {}
    return {"prefect.task_run.id": str(ctx.task_run.id), "prefect.task_run.attempt": ctx.task_run.run_count}


class WTBRayTaskRunner(ThreadPoolTaskRunner):
    """Prefect task runs orchestrated in the flow process, their bodies executed on Ray.

    ``prefect_ray.RayTaskRunner`` runs Prefect's whole task engine inside the
    Ray worker: each task run there rebuilds Prefect's settings and an API
    client, about 150 ms on a 2-core machine, and a worker killed mid-task
    leaves its task run "Running" forever. This runner keeps Prefect's engine
    (states, retries, timeouts, logs, the UI's task runs) in the flow-run
    process, like ``ThreadPoolTaskRunner``, and sends only the task function
    call to Ray, with the resources of ``prefect_ray.context.remote_options``.
    A crashed worker then surfaces as a failed attempt that Prefect retries on
    a fresh worker, and workers need no access to the Prefect API.

    The process must be connected to Ray first (``wtb_prefect`` does this from
    the project's ``RayConfig``); otherwise the first task joins a running
    cluster or starts a local one.

    Example:
        ```python
        from prefect import flow, task
        from prefect_ray.context import remote_options
        from wtb_prefect.run.task_runner import WTBRayTaskRunner

        @task
        def double(x):
            return 2 * x

        @flow(task_runner=WTBRayTaskRunner())
        def my_flow():
            with remote_options(num_cpus=0.5, memory=200 * 1024**2):
                return double.submit(21).result()

        assert my_flow() == 42
        ```
    """

    def duplicate(self) -> WTBRayTaskRunner:
        """A new runner with the same settings."""
        return type(self)(max_workers=self._max_workers)

    def submit(  # type: ignore[override]
        self,
        task: Any,
        parameters: dict[str, Any],
        wait_for: Iterable[Any] | None = None,
        dependencies: dict[str, set[Any]] | None = None,
    ) -> PrefectConcurrentFuture[Any]:
        """Submit ``task``: its run is orchestrated here, its function runs on Ray."""
        options = dict(RemoteOptionsContext.get().current_remote_options)
        on_ray = copy.copy(task)
        timeout = task.timeout_seconds
        on_ray.timeout_seconds = None  # enforced on Ray, where the call can be cancelled
        on_ray.fn = run_on_ray(task.fn, options, timeout)
        return super().submit(on_ray, parameters, wait_for, dependencies)
