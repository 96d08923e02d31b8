"""The Prefect flows of wtb_prefect and the plan they execute.

``wtb-batch-test`` runs a variant matrix x test cases; ``wtb-run`` runs one
execution. Both resolve the project by name or reference, validate everything
before any work starts, and run each execution as one LangGraph thread whose
nodes are Prefect tasks (on Ray through :class:`WTBRayTaskRunner`).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

from langgraph.errors import GraphDrained
from prefect import flow, get_run_logger
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.context import FlowRunContext

from .checkpoints import durability_for, open_checkpointer
from .compile import CompiledVariant, compile_variant
from .config import NodeResourceConfig
from .control import CHECKPOINT, controlled_run
from .dispatch import ExecutionContext, Mode, set_current_execution
from .errors import ConfigError, ExecutionStateError, StateValidationError
from .executions import ExecutionIndex, ExecutionRecord, open_index
from .observers import BatchObserver, notify, observer_factories
from .project import WorkflowProject
from .registry import resolve_project
from .resolution import parse_variant_choice
from .results import BatchTestResult, ErrorInfo, ExecutionResult
from .settings import WTBSettings, get_settings
from .state import TestCase, split_test_case, validate_state
from .task_runner import WTBRayTaskRunner

__all__ = ["BatchPlan", "batch_test_flow", "prepare_batch", "prepare_batch_resume", "prepare_resume", "run_flow"]


@dataclass
class ExecutionItem:
    """One (variant combination, test case) pair of a batch."""

    compiled: CompiledVariant
    case: TestCase
    raw_case: Mapping[str, Any]
    execution_id: str
    resume: bool = False
    """Continue the execution's thread from its latest checkpoint (when it has one)."""
    done: ExecutionResult | None = None
    """The stored result of an execution that finished before; it is not run again."""


@dataclass
class BatchPlan:
    """A validated batch: compiled variants, test cases and execution ids."""

    project: WorkflowProject
    batch_id: str
    variants: list[CompiledVariant]
    items: list[ExecutionItem]
    mode: Mode
    concurrency: int
    durability: str
    index: ExecutionIndex = field(repr=False)
    variant_matrix: list[dict[str, str]] = field(default_factory=list, repr=False)
    test_cases: list[dict[str, Any]] = field(default_factory=list, repr=False)
    parallelism: int | None = None
    on_result: Callable[[ExecutionResult], None] | None = field(default=None, repr=False)
    observers: list[BatchObserver] = field(default_factory=list, repr=False)

    def resource_requests(self) -> dict[str, NodeResourceConfig]:
        """Each dispatched node's Ray request, keyed by a readable name."""
        requests: dict[str, NodeResourceConfig] = {}
        for variant in self.variants:
            for name, plan in variant.nodes.items():
                key = name if variant.label == "default" else f"{name} (variant {variant.label})"
                requests[key] = NodeResourceConfig.model_validate(plan.resources)
        return requests


_prepared: contextvars.ContextVar[BatchPlan | None] = contextvars.ContextVar("wtb_prepared_plan", default=None)


def prepared_plan() -> BatchPlan | None:
    """The plan the caller validated before starting the flow, if any.

    Flow bodies read it through this function so that Ray, which pickles the
    flow run context by value, never has to pickle the context variable.
    """
    return _prepared.get()


@contextlib.contextmanager
def use_prepared_plan(plan: BatchPlan) -> Iterator[None]:
    """Let the next flow run in this context reuse ``plan`` instead of re-validating."""
    token = _prepared.set(plan)
    try:
        yield
    finally:
        _prepared.reset(token)


def prepare_batch(
    project: WorkflowProject,
    variant_matrix: Sequence[Mapping[str, str]] | None,
    test_cases: Sequence[Mapping[str, Any]],
    *,
    parallelism: int | None = None,
    batch_id: str | None = None,
    execution_ids: Sequence[str] | None = None,
    settings: WTBSettings | None = None,
) -> BatchPlan:
    """Validate a batch and compile its variants; no work starts here.

    Raises:
        UnknownVariantError, UnknownNodeError: a bad ``variant_matrix`` entry.
        StateValidationError: a test case that does not fit the state schema.
        ConfigError: an empty matrix or case list, a repeated combination, or
            a bad ``parallelism``.
    """
    settings = settings or get_settings()
    matrix = list(variant_matrix) if variant_matrix else [{}]
    if not isinstance(test_cases, Sequence) or isinstance(test_cases, (str, bytes)) or not test_cases:
        raise ConfigError("test_cases", "is empty or not a list", "give a list of at least one initial-state dict")
    if parallelism is not None and parallelism < 1:
        raise ConfigError("parallelism", f"is {parallelism}", "give a positive number of concurrent executions")
    choices = []
    for index, entry in enumerate(matrix):
        if not isinstance(entry, Mapping):
            raise ConfigError(f"variant_matrix[{index}]", f"is {type(entry).__name__}", "give a dict {node: variant}")
        choice = parse_variant_choice(project, entry)
        if choice in choices:
            raise ConfigError(
                f"variant_matrix[{index}]",
                f"repeats variant_matrix[{choices.index(choice)}] ({choice.label})",
                "remove the duplicate",
            )
        choices.append(choice)
    execution = project.execution
    mode: Mode = execution.batch_executor
    checkpointer = open_checkpointer(execution, settings.project_dir(project.name))
    variants = [compile_variant(project, c, mode=mode, checkpointer=checkpointer) for c in choices]
    batch_id = batch_id or uuid.uuid4().hex[:12]
    items: list[ExecutionItem] = []
    for v_index, variant in enumerate(variants):
        for c_index, raw in enumerate(test_cases):
            case = split_test_case(raw, variant.state_schema, c_index)
            try:
                validate_state(variant.state_schema, case.input, where=f"test_cases[{c_index}]")
            except StateValidationError as exc:
                raise StateValidationError(f"{exc} (variant {variant.label})") from exc
            position = len(items)
            execution_id = (
                execution_ids[position] if execution_ids else f"{project.name}-{batch_id}-v{v_index}-c{c_index}"
            )
            items.append(ExecutionItem(variant, case, raw, execution_id))
    concurrency = 1 if mode == "sequential" else (parallelism or execution.ray_config.max_concurrent_workflows)
    return BatchPlan(
        project=project,
        batch_id=batch_id,
        variants=variants,
        items=items,
        mode=mode,
        concurrency=min(concurrency, len(items)),
        durability=durability_for(execution),
        index=open_index(settings.state_dir),
        variant_matrix=[dict(m) for m in matrix],
        test_cases=[dict(c) for c in test_cases],
        parallelism=parallelism,
    )


def prepare_batch_resume(
    project: WorkflowProject,
    batch_id: str,
    *,
    parallelism: int | None = None,
    settings: WTBSettings | None = None,
) -> BatchPlan:
    """The plan that finishes batch ``batch_id`` after its driver stopped or was killed.

    The batch's variant matrix and test cases come from the execution index.
    Executions that completed or failed are not run again (their stored
    results are reused); interrupted and paused ones continue from their
    latest checkpoint; the others run from the start.

    Raises:
        ConfigError: the index has no such batch, or it belongs to another project.
        ExecutionStateError: an execution of the batch is still running in a live process.
    """
    settings = settings or get_settings()
    index = open_index(settings.state_dir)
    record = index.batch(batch_id)
    if record is None:
        raise ConfigError(
            "resume", f"names batch {batch_id!r}, which the execution index {index.path} does not have",
            "give the batch_id of an earlier run_batch_test (see wtb.list_batches())",
        )
    if record.project != project.name:
        raise ConfigError(
            "resume", f"batch {batch_id!r} belongs to project {record.project!r}, not {project.name!r}",
            f"call run_batch_test(project={record.project!r}, resume={batch_id!r})",
        )
    plan = prepare_batch(
        project, record.variant_matrix, record.test_cases,
        parallelism=parallelism or record.parallelism, batch_id=batch_id, settings=settings,
    )
    for item in plan.items:
        known = index.get(item.execution_id)
        if known is None or known.status == "pending":
            continue
        if known.status == "running":
            raise ExecutionStateError(
                f"execution {item.execution_id!r} of batch {batch_id!r} is still running in process "
                f"{known.owner_pid}. Fix: wait for it, or pause it and resume the batch afterwards"
            )
        if known.finished:
            item.done = index.result(item.execution_id)
            if item.done is not None:
                continue
        item.resume = True
    return plan


def prepare_resume(
    project: WorkflowProject, record: ExecutionRecord, *, settings: WTBSettings | None = None
) -> BatchPlan:
    """The plan that continues one execution's thread from its latest checkpoint."""
    plan = prepare_batch(
        project, [record.variant], [record.test_case],
        batch_id=record.batch_id, execution_ids=[record.execution_id], settings=settings,
    )
    plan.items[0].resume = True
    return plan


def _score(project: WorkflowProject, final_state: Any, raw_case: Mapping[str, Any]) -> dict[str, float]:
    scores: dict[str, float] = {}
    for name, evaluator in project.evaluators.items():
        value = evaluator(final_state, dict(raw_case))
        if isinstance(value, Mapping):
            scores.update({f"{name}.{k}" if k != name else name: float(v) for k, v in value.items()})
        else:
            scores[name] = float(value)
    return scores


def _invoke(plan: BatchPlan, item: ExecutionItem, config: dict[str, Any], result: ExecutionResult) -> Any:
    """``graph.invoke`` under a RunControl; a requested manual checkpoint drains and goes on.

    Raises:
        GraphDrained: the execution was paused.
    """
    graph = item.compiled.graph
    graph_input: Any = item.case.input
    if item.resume:
        saved = graph.checkpointer.get_tuple(config) if graph.checkpointer is not None else None
        if saved is not None:  # else it was interrupted before its first checkpoint: start over
            graph_input = None
            result.provenance["resumed_from"] = saved.config["configurable"]["checkpoint_id"]
    while True:
        with controlled_run(item.execution_id, plan.index) as control:
            try:
                return graph.invoke(graph_input, config, durability=plan.durability, control=control)
            except GraphDrained as drained:
                if drained.reason != CHECKPOINT:
                    raise
        plan.index.set_request(item.execution_id, None)
        graph_input = None


def _current_flow_run_id() -> str | None:
    """The id of the Prefect flow run this code runs in, if any."""
    flow_ctx = FlowRunContext.get()
    return str(flow_ctx.flow_run.id) if flow_ctx and flow_ctx.flow_run else None


def run_execution(plan: BatchPlan, item: ExecutionItem) -> ExecutionResult:
    """Run (or resume) one execution to its end, failure or pause; record it in the index."""
    compiled = item.compiled
    ctx = ExecutionContext(item.execution_id, compiled.label, item.case.case_id)
    ctx.on_node_end = lambda record: notify(plan.observers, "on_node_end", plan, item, record)
    token = set_current_execution(ctx)
    config = {
        "configurable": {"thread_id": item.execution_id},
        "recursion_limit": plan.project.execution.recursion_limit,
        "run_name": f"{plan.project.name}:{compiled.label}:{item.case.case_id}",
    }
    result = ExecutionResult(
        execution_id=item.execution_id,
        project=plan.project.name,
        variant=compiled.choice.as_dict(),
        variant_label=compiled.label,
        status="running",
        initial_state=item.case.input,
        case_id=item.case.case_id,
        expected=item.case.expected,
        batch_id=plan.batch_id,
        flow_run_id=_current_flow_run_id(),
        provenance=compiled.provenance(),
        started_at=time.time(),
    )
    plan.index.mark_running(item.execution_id, flow_run_id=result.flow_run_id)
    notify(plan.observers, "on_execution_start", plan, item)
    t0 = time.perf_counter()
    try:
        output = _invoke(plan, item, config, result)
        snapshot = compiled.graph.get_state(config)
        result.final_state = output
        result.status = "paused" if snapshot.next else "completed"
        result.provenance["checkpoint_id"] = snapshot.config["configurable"].get("checkpoint_id")
    except GraphDrained:
        snapshot = compiled.graph.get_state(config)
        result.final_state = snapshot.values
        result.status = "paused"
        result.provenance["checkpoint_id"] = snapshot.config["configurable"].get("checkpoint_id")
    except Exception as exc:
        result.status = "failed"
        result.error = ErrorInfo(type(exc).__name__, str(exc), ctx.failed_node, traceback.format_exc())
        try:
            snapshot = compiled.graph.get_state(config)
            result.final_state = snapshot.values
            result.provenance["checkpoint_id"] = snapshot.config["configurable"].get("checkpoint_id")
        except Exception:  # no checkpoint was written before the failure
            result.final_state = None
    finally:
        set_current_execution(None)
        del token
    result.duration_s = time.perf_counter() - t0
    result.nodes = ctx.records
    if result.status == "completed" and plan.project.evaluators:
        try:
            result.scores = _score(plan.project, result.final_state, item.raw_case)
        except Exception as exc:
            result.status = "failed"
            result.error = ErrorInfo(type(exc).__name__, f"evaluator failed: {exc}", None, traceback.format_exc())
    notify(plan.observers, "on_execution_end", plan, item, result)  # may add provenance: store after it
    plan.index.finish(result)
    return result


def _close_dead_flow_runs(plan: BatchPlan, current: str | None) -> None:
    """Mark Crashed the flow runs whose killed process left executions of this plan interrupted."""
    dead = set()
    for item in plan.items:
        if item.resume:
            record = plan.index.get(item.execution_id)
            if record is not None and record.status == "interrupted" and record.flow_run_id:
                dead.add(record.flow_run_id)
    if dead and current:
        from .flow_runs import mark_crashed

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


def execute_plan(plan: BatchPlan) -> BatchTestResult:
    """Run every execution of ``plan`` with at most ``plan.concurrency`` at once."""
    if plan.mode == "ray":
        from .services.ray_cluster import check_resources, connect_ray

        connect_ray(plan.project.execution.ray_config)
        check_resources(plan.resource_requests())
    flow_run_id = _current_flow_run_id()
    _close_dead_flow_runs(plan, flow_run_id)
    _index_plan(plan)
    plan.observers = [o for o in (factory(plan) for factory in observer_factories()) if o is not None]
    notify(plan.observers, "on_batch_start", plan)
    started = time.time()
    results: list[ExecutionResult | None] = [None] * len(plan.items)
    total = len(plan.items)
    progress_id = create_progress_artifact(progress=0.0, description=f"{plan.project.name} batch {plan.batch_id}")
    last_update = 0.0
    done = 0
    for index, item in enumerate(plan.items):
        if item.done is not None:  # finished in an earlier run of this batch
            results[index] = item.done
            done += 1
            if plan.on_result is not None:
                plan.on_result(item.done)
    with (
        task_run_log_level(get_settings().task_run_log_level),
        ThreadPoolExecutor(max_workers=plan.concurrency, thread_name_prefix="wtb-exec") as pool,
    ):
        futures = {
            pool.submit(contextvars.copy_context().run, run_execution, plan, item): index
            for index, item in enumerate(plan.items)
            if item.done is None
        }
        for future in as_completed(futures):
            result = future.result()
            results[futures[future]] = result
            done += 1
            if plan.on_result is not None:
                plan.on_result(result)
            if time.monotonic() - last_update > 1.0 or done == total:
                update_progress_artifact(artifact_id=progress_id, progress=100.0 * done / total)
                last_update = time.monotonic()
    batch = BatchTestResult(
        batch_id=plan.batch_id,
        project=plan.project.name,
        results=[r for r in results if r is not None],
        flow_run_id=flow_run_id,
        started_at=started,
        duration_s=time.time() - started,
    )
    create_table_artifact(
        key=f"wtb-{plan.project.name}-comparison".lower().replace("_", "-").replace(".", "-"),
        table=batch.summary(),
        description=f"Variant comparison of batch {plan.batch_id} ({total} executions)",
    )
    notify(plan.observers, "on_batch_end", plan, batch)
    logger = get_run_logger()
    failed = batch.failed
    logger.info(
        "batch %s: %d executions, %d failed, %.2fs", plan.batch_id, total, len(failed), batch.duration_s
    )
    return batch


@flow(
    name="wtb-batch-test",
    task_runner=WTBRayTaskRunner(),
    persist_result=False,
    validate_parameters=False,
)
def batch_test_flow(
    project: str,
    variant_matrix: list[dict[str, str]] | None = None,
    test_cases: list[dict[str, Any]] | None = None,
    parallelism: int | None = None,
    batch_id: str | None = None,
    resume: str | None = None,
    regression_gate: dict[str, Any] | None = None,
) -> BatchTestResult:
    """Run every variant combination of ``variant_matrix`` on every test case.

    With ``resume=<batch id>`` (and no matrix or cases), finish that batch
    instead: see :func:`prepare_batch_resume`. With ``regression_gate``
    (``{"baseline": ..., "tolerances": {metric: amount}}``, see
    :func:`wtb_prefect.comparison.prepare_gate`) the flow run fails with
    ``RegressionError`` when a combination regresses against the baseline.
    """
    plan = prepared_plan()
    if plan is None and resume:
        plan = prepare_batch_resume(resolve_project(project), resume, parallelism=parallelism)
    elif plan is None:
        plan = prepare_batch(
            resolve_project(project), variant_matrix, test_cases or [], parallelism=parallelism, batch_id=batch_id
        )
    from .comparison import prepare_gate

    gate = prepare_gate(plan, regression_gate)  # validated before any work
    batch = execute_plan(plan)
    if gate is not None:
        gate.enforce(batch)
    return batch


@flow(
    name="wtb-run",
    task_runner=WTBRayTaskRunner(),
    persist_result=False,
    validate_parameters=False,
)
def run_flow(
    project: str,
    initial_state: dict[str, Any],
    variant_config: dict[str, str] | None = None,
    execution_id: str | None = None,
    resume: bool = False,
) -> ExecutionResult:
    """Run one execution of a project with an optional variant choice.

    With ``resume=True``, continue execution ``execution_id`` from its latest
    checkpoint instead (it must be in the execution index).
    """
    plan = prepared_plan()
    if plan is None and resume:
        from .errors import UnknownExecutionError

        record = open_index(get_settings().state_dir).get(execution_id or "")
        if record is None:
            raise UnknownExecutionError(f"no execution {execution_id!r} in the execution index")
        plan = prepare_resume(resolve_project(project), record)
    elif plan is None:
        plan = prepare_batch(
            resolve_project(project),
            [variant_config or {}],
            [initial_state],
            execution_ids=[execution_id] if execution_id else None,
        )
    return execute_plan(plan).results[0]

