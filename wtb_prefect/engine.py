"""The Prefect flows of wtb_prefect and the plan they execute.

``wtb-batch-test`` runs a variant matrix x test cases; ``wtb-run`` runs one
execution. Both resolve the project by name or reference, validate everything
before any work starts, and run each execution as one LangGraph thread whose
nodes are Prefect tasks (on Ray through :class:`WTBRayTaskRunner`).
"""

from __future__ import annotations

import contextlib
import contextvars
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.context import FlowRunContext

from .checkpoints import durability_for, open_checkpointer
from .compile import CompiledVariant, compile_variant
from .config import NodeResourceConfig
from .dispatch import ExecutionContext, Mode, set_current_execution
from .errors import ConfigError, StateValidationError
from .observers import BatchObserver, notify, observer_factories
from .project import WorkflowProject
from .registry import resolve_project
from .resolution import parse_variant_choice
from .results import BatchTestResult, ErrorInfo, ExecutionResult
from .settings import WTBSettings, get_settings
from .state import TestCase, split_test_case, validate_state
from .task_runner import WTBRayTaskRunner

__all__ = ["BatchPlan", "batch_test_flow", "prepare_batch", "run_flow"]


@dataclass
class ExecutionItem:
    """One (variant combination, test case) pair of a batch."""

    compiled: CompiledVariant
    case: TestCase
    raw_case: Mapping[str, Any]
    execution_id: str


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
    )


def _score(project: WorkflowProject, final_state: Any, raw_case: Mapping[str, Any]) -> dict[str, float]:
    scores: dict[str, float] = {}
    for name, evaluator in project.evaluators.items():
        value = evaluator(final_state, dict(raw_case))
        if isinstance(value, Mapping):
            scores.update({f"{name}.{k}" if k != name else name: float(v) for k, v in value.items()})
        else:
            scores[name] = float(value)
    return scores


def run_execution(plan: BatchPlan, item: ExecutionItem) -> ExecutionResult:
    """Run one execution to its end (or failure, or pause) and record it."""
    compiled = item.compiled
    ctx = ExecutionContext(item.execution_id, compiled.label, item.case.case_id)
    token = set_current_execution(ctx)
    config = {
        "configurable": {"thread_id": item.execution_id},
        "recursion_limit": plan.project.execution.recursion_limit,
        "run_name": f"{plan.project.name}:{compiled.label}:{item.case.case_id}",
    }
    flow_ctx = FlowRunContext.get()
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
        flow_run_id=str(flow_ctx.flow_run.id) if flow_ctx and flow_ctx.flow_run else None,
        provenance=compiled.provenance(),
        started_at=time.time(),
    )
    notify(plan.observers, "on_execution_start", plan, item)
    t0 = time.perf_counter()
    try:
        output = compiled.graph.invoke(item.case.input, config, durability=plan.durability)
        snapshot = compiled.graph.get_state(config)
        result.final_state = output
        result.status = "paused" if snapshot.next else "completed"
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
    notify(plan.observers, "on_execution_end", plan, item, result)
    return result


def execute_plan(plan: BatchPlan) -> BatchTestResult:
    """Run every execution of ``plan`` with at most ``plan.concurrency`` at once."""
    if plan.mode == "ray":
        from .services.ray_cluster import check_resources, connect_ray

        connect_ray(plan.project.execution.ray_config)
        check_resources(plan.resource_requests())
    flow_ctx = FlowRunContext.get()
    plan.observers = [o for o in (factory(plan) for factory in observer_factories()) if o is not None]
    notify(plan.observers, "on_batch_start", plan)
    started = time.time()
    results: list[ExecutionResult | None] = [None] * len(plan.items)
    total = len(plan.items)
    progress_id = create_progress_artifact(progress=0.0, description=f"{plan.project.name} batch {plan.batch_id}")
    last_update = 0.0
    done = 0
    with ThreadPoolExecutor(max_workers=plan.concurrency, thread_name_prefix="wtb-exec") as pool:
        futures = {
            pool.submit(contextvars.copy_context().run, run_execution, plan, item): index
            for index, item in enumerate(plan.items)
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
        flow_run_id=str(flow_ctx.flow_run.id) if flow_ctx and flow_ctx.flow_run else None,
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
) -> BatchTestResult:
    """Run every variant combination of ``variant_matrix`` on every test case."""
    plan = prepared_plan()
    if plan is None:
        plan = prepare_batch(
            resolve_project(project), variant_matrix, test_cases or [], parallelism=parallelism, batch_id=batch_id
        )
    return execute_plan(plan)


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
) -> ExecutionResult:
    """Run one execution of a project with an optional variant choice."""
    plan = prepared_plan()
    if plan is None:
        plan = prepare_batch(
            resolve_project(project),
            [variant_config or {}],
            [initial_state],
            execution_ids=[execution_id] if execution_id else None,
        )
    return execute_plan(plan).results[0]

