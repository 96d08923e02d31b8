"""The Prefect task runner that runs task bodies on Ray with per-task resources."""

from __future__ import annotations

import copy
import functools
import inspect
import threading
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from prefect.futures import PrefectConcurrentFuture
from prefect.task_runners import ThreadPoolTaskRunner
from prefect_ray.context import RemoteOptionsContext

from wtb_prefect.config import ExecutionConfig, NodeResourceConfig
from wtb_prefect.run.invocation import current_invocation
from wtb_prefect.run.lanes import LANE_OPTION, LaneSpec, call_node, lane_spec
from wtb_prefect.run.node_scope import absorb_worker_extras, current_node_scope
from wtb_prefect.worker.call import EXTRAS_ATTR

__all__ = ["WTBRayTaskRunner"]


@functools.cache
def _signature(fn: Callable[..., Any]) -> inspect.Signature:
    """``inspect.signature(fn)``, worked out once per function (it is asked on every node call)."""
    return inspect.signature(fn)


def _node_call(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]:
    """The node body call inside a call of ``dispatch.node_task`` (``fn(state, **kwargs)``).

    The worker then runs the node's body itself (an actor can await an
    ``async def`` body) instead of the task function around it. The body and
    its injected arguments are the current node invocation's; ``state`` is the
    task's parameter.
    """
    invocation = current_invocation()
    if invocation is None:
        raise RuntimeError("a node task ran outside a node call (no current NodeInvocation)")
    bound = _signature(fn).bind(*args, **kwargs)
    return invocation.fn, (bound.arguments["state"],), dict(invocation.kwargs)


def run_on_ray(fn: Callable[..., Any], options: dict[str, Any], timeout: float | None) -> Callable[..., Any]:
    """Wrap ``fn`` so that each call runs on Ray with ``options`` and waits for it.

    ``options`` may hold a node's :class:`~wtb_prefect.run.lanes.LaneSpec`
    under ``"wtb_lane"`` (``compile`` puts it there): the call then takes the
    node's lane (an I/O lane's actor or a Ray task) and its rate limits.
    The user's exception comes back as itself (Ray's ``RayTaskError`` is an
    instance of the original exception class); a call whose body runs longer
    than ``timeout`` seconds raises ``TimeoutError``, and one that waits longer
    than the node's ``queue_timeout`` to start raises ``NodeQueueTimeoutError``.
    """
    options = dict(options)
    spec: LaneSpec | None = options.pop(LANE_OPTION, None)
    if spec is None:
        spec = lane_spec(
            getattr(fn, "__name__", "task"),
            fn,
            NodeResourceConfig(),
            options,
            limit_key="",
            queue_timeout=ExecutionConfig.model_fields["queue_timeout"].default,
        )
        spec.kind, spec.auto = "task", None  # a plain Prefect task keeps one Ray task per call

    @functools.wraps(fn)
    def on_ray(*args: Any, **kwargs: Any) -> Any:
        from wtb_prefect.services.ray_cluster import connect_ray

        connect_ray()  # no-op once connected
        scope = current_node_scope()
        carrier = scope.carrier(_task_run_attributes()) if scope is not None else None
        body, body_args, body_kwargs = (fn, args, kwargs) if spec.body is fn else _node_call(fn, args, kwargs)
        try:
            result, extras = call_node(spec, options, body, body_args, body_kwargs, carrier, timeout)
        except Exception as exc:
            cause = getattr(exc, "cause", None)
            absorb_worker_extras(getattr(exc, EXTRAS_ATTR, None) or getattr(cause, EXTRAS_ATTR, None))
            raise
        absorb_worker_extras(extras)
        return result

    return on_ray


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
    client, and a worker killed mid-task
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
        return super().submit(_on_ray_task(task), parameters, wait_for, dependencies)

    def run(self, task: Any, parameters: dict[str, Any]) -> Any:
        """Run ``task`` in the calling thread and return its final state; its function runs on Ray.

        The same task run as ``submit(...)`` then ``wait()`` (Prefect's engine,
        states, retries, events), without handing it to a pool thread and back:
        a caller that only waits for its task run (a node of a LangGraph
        execution) saves the thread hop, the future and its wake-ups. Like a
        submitted run that has not started, it is cancelled when the flow's
        task runner is.

        Raises:
            RuntimeError: the runner is not started (or was cancelled).
        """
        from prefect.task_engine import run_task_sync

        if not self._started or self._executor is None:
            raise RuntimeError("Task runner is not started")
        cancel = threading.Event()
        key = uuid.uuid4()
        self._cancel_events[key] = cancel
        try:
            return run_task_sync(
                task=_on_ray_task(task),
                parameters=parameters,
                return_type="state",
                context={"cancel_event": cancel},
            )
        finally:
            self._cancel_events.pop(key, None)


def _on_ray_task(task: Any) -> Any:
    """A copy of ``task`` whose function runs on Ray with the current ``remote_options``."""
    options = dict(RemoteOptionsContext.get().current_remote_options)
    on_ray = copy.copy(task)
    timeout = task.timeout_seconds
    on_ray.timeout_seconds = None  # enforced where the body runs, on its own run time
    on_ray.fn = run_on_ray(task.fn, options, timeout)
    return on_ray
