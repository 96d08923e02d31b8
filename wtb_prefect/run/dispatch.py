"""Running a LangGraph node's body as a Prefect task, on Ray or in the flow process.

LangGraph keeps running the graph; each node callable is replaced by a thin
wrapper that ships the node's input to a Prefect task (with the node's Ray
resources) and hands the task's return value back to LangGraph unchanged.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from typing import Any

from langchain_core.runnables import RunnableConfig
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
from prefect.results import ResultRecord
from prefect.utilities.annotations import quote
from prefect.utilities.callables import get_call_parameters
from prefect_ray.context import remote_options

from wtb_prefect.results import ErrorInfo, NodeRecord
from wtb_prefect.run.context import BatchExecutor, NodePlan, current_execution
from wtb_prefect.run.invocation import NodeInvocation, current_invocation, invoking
from wtb_prefect.run.langgraph_private import RunnableCallable
from wtb_prefect.run.node_cache import begin_call
from wtb_prefect.run.node_scope import (
    current_node_lane,
    current_node_metrics,
    current_node_run_s,
    current_node_usage,
    observe_node,
)
from wtb_prefect.run.spend import default_ledger
from wtb_prefect.run.task_runner import WTBRayTaskRunner
from wtb_prefect.worker.call import AsyncBody
from wtb_prefect.worker.workspace import bind_workspace

__all__ = ["body_and_accepts", "make_node_callable", "node_task", "node_task_for"]


@task(name="node", cache_policy=NO_CACHE, persist_result=False, task_run_name="{label}")
def node_task(state: Any, label: str) -> Any:
    """Run one LangGraph node body; the value goes back to LangGraph unchanged.

    Its parameters are what the task run shows as its inputs and name; the body,
    its injected arguments and the node-call key come from the current
    :class:`~wtb_prefect.run.invocation.NodeInvocation` (set by the dispatcher).
    """
    invocation = current_invocation()
    if invocation is None:
        raise RuntimeError(f"node task {label!r} ran outside a node call (no current NodeInvocation)")
    return invocation.fn(state, **invocation.kwargs)


def node_task_for(node: str, timeout_s: float, retries: int, retry_delay_s: float) -> Any:
    """The Prefect task of one node: :func:`node_task` named after the node, with its timeout and retries."""
    return node_task.with_options(
        name=node, timeout_seconds=timeout_s, retries=retries, retry_delay_seconds=retry_delay_s
    )


def _sync_body(runnable: RunnableCallable) -> Callable[..., Any]:
    if runnable.func is not None:
        return runnable.func
    return AsyncBody(runnable.afunc)


def body_and_accepts(impl: Callable[..., Any] | RunnableCallable) -> tuple[Callable[..., Any], dict[str, Any]]:
    """The plain function of a node and the LangGraph arguments it asks for."""
    runnable = impl if isinstance(impl, RunnableCallable) else RunnableCallable(impl, trace=False)
    return _sync_body(runnable), dict(runnable.func_accepts)


def _shippable_kwargs(accepts: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
    """The injected arguments a node asked for, reduced to what can cross to a Ray worker."""
    from langgraph.runtime import Runtime

    kwargs: dict[str, Any] = {}
    conf = config.get("configurable", {})
    runtime = conf.get("__pregel_runtime")
    for kw in accepts:
        if kw == "config":
            kwargs["config"] = RunnableConfig(
                configurable={k: v for k, v in conf.items() if not k.startswith("__")},
                tags=list(config.get("tags", [])),
                metadata={
                    k: v for k, v in config.get("metadata", {}).items() if isinstance(v, (str, int, float, bool))
                },
                recursion_limit=config.get("recursion_limit", 25),
            )
        elif kw == "runtime":
            kwargs["runtime"] = Runtime(
                context=getattr(runtime, "context", None), previous=getattr(runtime, "previous", None)
            )
        elif kw == "previous":
            kwargs["previous"] = getattr(runtime, "previous", None)
        elif kw in ("store", "writer"):
            kwargs[kw] = None  # process-bound objects cannot travel to a worker
    return kwargs


def _run_on_ray(plan: NodePlan, task: Any, args: tuple[Any, ...], params: dict[str, Any]) -> Any:
    """The final state of one task run of ``task`` whose body runs on Ray with the node's resources.

    Under the flow's :class:`WTBRayTaskRunner` the task run is orchestrated in
    this thread (the execution's, which would only wait for it otherwise);
    under another task runner it is submitted to it.
    """
    runner = getattr(FlowRunContext.get(), "task_runner", None)
    with remote_options(**plan.ray_options):
        if isinstance(runner, WTBRayTaskRunner):
            return runner.run(task, get_call_parameters(task.fn, args, params))
        future = task.submit(*args, **params)
    future.wait()
    return future.state


def _value(state: Any) -> Any:
    """The value of a task run's final state.

    A completed run's value is in memory (``ResultRecord``): read it here
    rather than through ``State.result()``, which hops to Prefect's event-loop
    thread and back. Any other state goes through ``State.result()`` (raises
    the run's exception, reads a persisted result).
    """
    data = state.data
    if state.is_completed() and isinstance(data, ResultRecord):
        return data.result
    return state.result()


def _record(plan: NodePlan, started: float, t0: float, task_run_id: str | None, **outcome: Any) -> NodeRecord:
    """The record of one node run that ends now (``outcome``: status, output or error, provenance),
    with its model usage booked and priced (spent, or saved when the call was reused)."""
    usage, saved = current_node_usage()
    record = NodeRecord(
        node=plan.node,
        implementation=plan.implementation,
        version=plan.version,
        started_at=started,
        duration_s=time.perf_counter() - t0,
        task_run_id=task_run_id,
        resources=plan.resources,
        metrics=current_node_metrics(),
        run_s=current_node_run_s(),
        **current_node_lane(),
        usage=usage or None,
        saved_usage=saved or None,
        **outcome,
    )
    ctx = current_execution()
    if usage or saved:
        ledger = ctx.spend if ctx is not None and ctx.spend is not None else default_ledger()
        ledger.book(ctx.execution_id if ctx is not None else None, record)
    return record


def make_node_callable(plan: NodePlan, mode: BatchExecutor) -> Callable[..., Any]:
    """The callable that replaces a node's body in the compiled graph."""

    def dispatched(state: Any, config: RunnableConfig) -> Any:
        ctx = current_execution()
        kwargs = _shippable_kwargs(plan.accepts, config)
        label = f"{plan.node} | {ctx.variant_label} | case {ctx.case_id}" if ctx else plan.node
        started = time.time()
        t0 = time.perf_counter()
        task_run_id = None
        func = bind_workspace(plan.func)  # the execution's file workspace travels with the body
        call = None
        if ctx is not None and ctx.spend is not None:
            ctx.spend.before_call(ctx.execution_id, plan.node)  # a budget or cost limit reached: no new call
        try:
            if FlowRunContext.get() is None:
                output = func(state, **kwargs)  # outside a flow: plain call
            else:
                with (
                    begin_call(plan, ctx, func, state, kwargs, label) as call,  # shared node calls
                    invoking(NodeInvocation(func, kwargs, call.key, call.files_before)),
                ):
                    # quote(): Prefect neither walks the node's input looking for futures
                    # (it holds none) when it creates the task run nor when it resolves its
                    # parameters; the body gets the values themselves.
                    args = (quote(state), call.label)
                    if mode == "ray":
                        final = _run_on_ray(plan, call.task, args, {})
                        task_run_id = str(final.state_details.task_run_id)
                        output = _value(final)
                        call.ended(final)
                    elif call.key is None:
                        output = call.task(*args)
                    else:
                        final = call.task(*args, return_state=True)
                        task_run_id = str(final.state_details.task_run_id)
                        output = _value(final)
                        call.ended(final)
        except BaseException as exc:
            if ctx is not None:
                error = ErrorInfo(type(exc).__name__, str(exc), plan.node, traceback.format_exc())
                ctx.add(_record(plan, started, t0, task_run_id, status="failed", error=error))
            raise
        if ctx is not None:
            provenance = call.provenance() if call is not None else {}
            ctx.add(_record(plan, started, t0, task_run_id, status="completed", output=output, **provenance))
        return output

    dispatched.__name__ = plan.node
    dispatched.__qualname__ = plan.node
    return observe_node(plan, dispatched)  # span + metrics of the node run
