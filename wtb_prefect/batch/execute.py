"""Executing a batch plan inside a flow run: executions at once, observers, progress.

:func:`execute_plan` runs every execution of a :class:`~wtb_prefect.batch.plan.BatchPlan`
with at most ``plan.concurrency`` computing at once, tells the batch's observers
(the registered integrations and any :func:`~wtb_prefect.batch.observers.watching`
this batch) and keeps a Prefect progress artifact up to date.

``plan.concurrency`` (the batch's ``parallelism``) counts executions *computing*:
with node-call sharing, an execution waiting for an identical node call that
another execution is computing gives its slot to the next execution of the plan
meanwhile (:mod:`wtb_prefect.run.slots`), so up to ``ALIVE_PER_SLOT`` times as
many executions may be alive, most of them waiting. Executions start in plan
order (case-major), and one that goes on after a wait gets a slot before any
new one starts.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from prefect import get_run_logger

from wtb_prefect.analysis.batch_result import BatchTestResult
from wtb_prefect.batch.analysis import analyse_finished_batch
from wtb_prefect.batch.flow_runs import batch_flow_run_name, mark_crashed, open_flow_runs, record_unrecorded
from wtb_prefect.batch.observers import BatchObserver, end_batch, notify, observers_for
from wtb_prefect.batch.plan import BatchPlan
from wtb_prefect.batch.previous import against_previous_run
from wtb_prefect.batch.progress import BatchProgress
from wtb_prefect.batch.race import run_race, save_race
from wtb_prefect.errors import StateStorageError
from wtb_prefect.results import ExecutionResult, NodeRecord
from wtb_prefect.run.execution import ExecutionHooks, ExecutionItem, current_flow_run_id, run_execution
from wtb_prefect.run.lanes import LANE_OPTION, batch_lanes
from wtb_prefect.run.slots import ExecutionSlots, SlotLease, leased
from wtb_prefect.run.spend import cost_tracking
from wtb_prefect.services.prefect_outage import mark_api_up
from wtb_prefect.services.ray_cluster import (
    check_files_reachable,
    check_resources,
    connect_ray,
    local_cluster_resources,
)
from wtb_prefect.settings import get_settings

R = TypeVar("R")

__all__ = ["check_plan_resources", "execute_plan", "task_run_log_level"]


class _ObserverHooks(ExecutionHooks):
    """An execution's hooks, forwarded to the batch's observers."""

    def __init__(self, plan: BatchPlan, observers: list[BatchObserver]) -> None:
        self.plan = plan
        self.observers = observers

    def on_execution_start(self, item: ExecutionItem) -> None:
        notify(self.observers, "on_execution_start", self.plan, item)

    def on_node_end(self, item: ExecutionItem, record: NodeRecord) -> None:
        notify(self.observers, "on_node_end", self.plan, item, record)

    def on_execution_end(self, item: ExecutionItem, result: ExecutionResult) -> None:
        notify(self.observers, "on_execution_end", self.plan, item, result)


def check_plan_resources(plan: BatchPlan, beside: Callable[[], R] | None = None) -> R | None:
    """Join Ray and check every node's request against the cluster, once per plan.

    ``beside`` (e.g. starting the Prefect server) runs once Ray is joined, or,
    when Ray has to start in this process, in a thread while it starts: after
    the requests were checked against this machine, so nothing starts for a
    request it could never meet. Returns what ``beside`` returned.

    Raises:
        ResourceUnsatisfiableError: a request no node of the cluster can ever satisfy.
    """
    run_beside = beside or (lambda: None)
    if plan.mode != "ray" or plan.resources_checked:
        return run_beside()
    local = local_cluster_resources(plan.project.execution.ray_config)
    if local is None:
        _join_and_check(plan)
        return run_beside()
    check_resources(plan.resource_requests(), totals=local)  # Ray would start here
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="wtb-beside-ray") as pool:
        started = pool.submit(run_beside)  # both take seconds from cold
        _join_and_check(plan)
        return started.result()


def _join_and_check(plan: BatchPlan) -> None:
    connect_ray(plan.project.execution.ray_config)
    check_files_reachable(plan.project.name, plan.project.file_tracking)
    check_resources(plan.resource_requests())
    plan.resources_checked = True


def _close_dead_flow_runs(plan: BatchPlan, current: str | None) -> None:
    """Mark Crashed the flow runs of this batch whose process was killed.

    Those whose executions the index shows interrupted, and, when the batch is
    resumed, every other open flow run of the batch: a driver killed between
    two executions, or before its first, left one that no execution names
    (resuming refuses a batch with an execution running in a live process).
    """
    dead = set()
    for item in plan.items:
        if item.resume:
            record = plan.index.get(item.execution_id)
            if record is not None and record.status == "interrupted" and record.flow_run_id:
                dead.add(record.flow_run_id)
    if current and plan.index.batch(plan.batch_id) is not None:
        dead.update(open_flow_runs(batch_flow_run_name(plan.project.name, plan.batch_id)))
    dead.discard(current)
    if dead and current:
        mark_crashed(dead, taken_over_by=current)


def _index_plan(plan: BatchPlan) -> None:
    """Record the batch and its executions so they can be found and resumed from any process."""
    plan.index.add_batch(plan.batch_id, plan.project.name, plan.variant_matrix, plan.test_cases, plan.parallelism)
    plan.index.add_executions(
        {
            "execution_id": item.execution_id,
            "project": plan.project.name,
            "batch_id": plan.batch_id,
            "position": position,
            "variant": item.compiled.choice.as_dict(),
            "variant_label": item.compiled.label,
            "case_id": item.case.case_id,
            "test_case": item.raw_case,
        }
        for position, item in enumerate(plan.items)
    )
    if plan.race is not None:  # beside the index: a resume from any process goes on with the same race
        save_race(plan.index.path.parent, plan.batch_id, plan.race)


_log_level_lock = threading.Lock()
_log_level_users = 0
_log_level_saved = logging.NOTSET


@contextlib.contextmanager
def task_run_log_level(level: str) -> Iterator[None]:
    """Set Prefect's task-run logger to ``level`` while any batch of this process runs."""
    global _log_level_users, _log_level_saved
    logger = logging.getLogger("prefect.task_runs")
    with _log_level_lock:
        if _log_level_users == 0:
            _log_level_saved = logger.level
            logger.setLevel(level.upper())
        _log_level_users += 1
    try:
        yield
    finally:
        with _log_level_lock:
            _log_level_users -= 1
            if _log_level_users == 0:
                logger.setLevel(_log_level_saved)


def _lanes(plan: BatchPlan) -> contextlib.AbstractContextManager[None]:
    """The batch's I/O lanes, started before its first node (Ray mode only)."""
    if plan.mode != "ray":
        return contextlib.nullcontext()
    specs = [
        n.ray_options[LANE_OPTION] for v in plan.variants for n in v.nodes.values() if LANE_OPTION in n.ray_options
    ]
    return batch_lanes(specs, plan.concurrency)


ALIVE_PER_SLOT = 8
"""With node-call sharing, at most this many executions per slot are alive at once (started and
not ended): the ones beyond ``concurrency`` wait for identical node calls other executions compute.
Each alive execution takes one thread of the driver."""


def _alive_bound(plan: BatchPlan, pending: int) -> int:
    """How many executions of ``plan`` may be alive at once (computing, or waiting for a shared call)."""
    if plan.sharing is None or plan.mode == "sequential":
        bound = plan.concurrency  # nothing ever waits for another execution
    else:
        bound = ALIVE_PER_SLOT * plan.concurrency
    return max(1, min(bound, pending))


def _run_in_slots(
    plan: BatchPlan, pending: list[tuple[int, ExecutionItem]], run: Callable[[ExecutionItem], ExecutionResult]
) -> Iterator[tuple[Future[ExecutionResult], int]]:
    """Run ``run(item)`` for each pending ``(position, item)`` with ``plan.concurrency`` slots;
    yield each execution's future (and position) as it ends.

    A feeder thread starts the executions in plan order: each takes a thread of
    the pool (at most :func:`_alive_bound` alive), then a slot (after the
    executions that go on after a wait), then runs in the flow run's context.
    Leaving early (the caller raised) still waits for every execution to end,
    as a thread pool's shutdown does.
    """
    slots = ExecutionSlots(plan.concurrency)
    bound = _alive_bound(plan, len(pending))
    alive = threading.Semaphore(bound)
    finished: queue.SimpleQueue[tuple[Future[ExecutionResult], int] | BaseException] = queue.SimpleQueue()
    flow_context = contextvars.copy_context()  # the flow run's context, copied for each execution

    def execution(lease: SlotLease, item: ExecutionItem) -> ExecutionResult:
        with leased(lease):
            return run(item)

    def ended(position: int, future: Future[ExecutionResult]) -> None:
        alive.release()
        finished.put((future, position))

    def feed() -> None:
        try:
            with ThreadPoolExecutor(max_workers=bound, thread_name_prefix="wtb-exec") as pool:
                for position, item in pending:
                    alive.acquire()
                    if plan.spend is not None and plan.spend.budget_reached:  # no execution starts past the budget
                        alive.release()
                        finished.put((_not_started(), position))
                        continue
                    lease = SlotLease(slots, position)
                    lease.start()
                    try:
                        future = pool.submit(flow_context.copy().run, execution, lease, item)
                    except BaseException:
                        lease.end()
                        alive.release()
                        raise
                    future.add_done_callback(functools.partial(ended, position))
        except BaseException as exc:  # the caller raises it
            finished.put(exc)

    feeder = threading.Thread(target=feed, name="wtb-exec-feeder")
    feeder.start()
    try:
        for _ in pending:
            entry = finished.get()
            if isinstance(entry, BaseException):
                raise entry
            yield entry
    finally:
        feeder.join()


def execute_plan(plan: BatchPlan) -> BatchTestResult:
    """Run every execution of ``plan`` with at most ``plan.concurrency`` computing at once."""
    check_plan_resources(plan)
    flow_run_id = current_flow_run_id()
    mark_api_up()  # the flow run started: the API answers
    if any(item.resume or item.done is not None for item in plan.items):
        record_unrecorded(plan.index, plan.batch_id)  # before the open flow runs of the batch are closed
    _close_dead_flow_runs(plan, flow_run_id)
    _index_plan(plan)
    observers = observers_for(plan)
    hooks = _ObserverHooks(plan, observers)
    notify(observers, "on_batch_start", plan)
    started = time.time()
    progress = BatchProgress(f"{plan.project.name} batch {plan.batch_id}")
    try:
        results = _run_pending(plan, observers, hooks, progress)
        return _end_batch(plan, observers, results, started, flow_run_id)
    finally:
        progress.close()  # its last update went on while the batch ended


def _run_pending(
    plan: BatchPlan, observers: list[BatchObserver], hooks: ExecutionHooks, progress: BatchProgress
) -> list[ExecutionResult]:
    """Run the executions of ``plan`` not finished before; every result, in plan order.

    A race (``plan.race``) asks for its executions round by round (:func:`~wtb_prefect.batch.race.run_race`);
    what it never asks for does not run and has no result.

    Raises:
        StateStorageError: the state of some executions could not be written (the others ran to their end).
    """
    results: list[ExecutionResult | None] = [None] * len(plan.items)
    total = len(plan.items)
    done = 0
    for index, item in enumerate(plan.items):
        if item.done is not None:  # finished in an earlier run of this batch
            results[index] = item.done
            done += 1
            notify(observers, "on_result", plan, item.done)
    if done:
        progress.set(100.0 * done / total)  # a resumed batch starts where it was
    storage_errors: list[StateStorageError] = []
    pending = [(index, item) for index, item in enumerate(plan.items) if item.done is None]
    run = functools.partial(
        run_execution,
        project=plan.project,
        index=plan.index,
        durability=plan.durability,
        batch_id=plan.batch_id,
        hooks=hooks,
        sharing=plan.sharing,
        spend=plan.spend,
    )

    def run_items(pairs: list[tuple[int, ExecutionItem]]) -> list[tuple[int, ExecutionResult]]:
        nonlocal done
        fresh = [(index, item) for index, item in pairs if results[index] is None]
        with contextlib.closing(_run_in_slots(plan, fresh, run)) as ends:  # closed: every execution ended
            for future, index in ends:
                try:
                    result = future.result()
                except StateStorageError as exc:  # the others go on: what they store where there is room is kept
                    storage_errors.append(exc)
                    continue
                if result is None:  # not started: the budget was reached (it stays pending for a resume)
                    continue
                results[index] = result
                done += 1
                notify(observers, "on_result", plan, result)
                progress.set(100.0 * done / total)
        return [(index, results[index]) for index, _ in pairs if results[index] is not None]  # type: ignore[misc]

    with _lanes(plan), task_run_log_level(get_settings().task_run_log_level):
        if plan.race is None:
            run_items(pending)
        else:
            variant_of = {}
            case_of = {}
            per_case = len(plan.variants) * plan.repetitions  # plan order is case-major
            for position, item in enumerate(plan.items):
                variant_of[item.execution_id] = next(i for i, v in enumerate(plan.variants) if v is item.compiled)
                case_of[item.execution_id] = position // per_case
            run_race(plan.race, plan.items, variant_of, case_of, plan.repetitions, run_items)
            progress.set(100.0)  # what the race did not ask for will not run
    if storage_errors:
        first = storage_errors[0]
        raise StateStorageError(
            f"{len(storage_errors)} of {total} executions stopped because their state could not be written; "
            f"the first: {first}",
            batch_id=plan.batch_id,
            execution_id=first.execution_id,
        ) from first
    return [r for r in results if r is not None]


def _not_started() -> Future[ExecutionResult | None]:
    future: Future[ExecutionResult | None] = Future()
    future.set_result(None)
    return future


def _end_batch(
    plan: BatchPlan,
    observers: list[BatchObserver],
    results: list[ExecutionResult],
    started: float,
    flow_run_id: str | None,
) -> BatchTestResult:
    """The batch's result, analysed (judges, forest plot), then recorded by the observers."""
    batch = BatchTestResult(
        batch_id=plan.batch_id,
        project=plan.project.name,
        results=results,
        flow_run_id=flow_run_id,
        started_at=started,
        duration_s=time.time() - started,
    )
    if plan.race is not None:  # before the analysis and the observers, which show it
        batch.tracking["race"] = plan.race.outcome
    analyse_finished_batch(plan, batch)  # judges and forest plot, before the observers record the batch
    against_previous_run(batch, plan.gate.tolerances if plan.gate else ())  # a deployment run: drift since the last
    if plan.spend is not None:
        batch.tracking["cost"] = cost_tracking(plan.spend, plan.batch_id, batch.results, len(plan.items))
    if plan.sharing is not None:
        batch.tracking["node_calls"] = {
            **batch.node_calls(),
            "uncacheable": [str(error) for error in plan.sharing.errors()],
        }
    end_batch(observers, plan, batch)  # concurrently: recording a batch mostly waits
    logger = get_run_logger()
    logger.info(
        "batch %s: %d executions, %d failed, %.2fs", plan.batch_id, len(results), len(batch.failed), batch.duration_s
    )
    return batch
