"""Running one execution: one LangGraph thread, from its start or latest checkpoint to its end.

:func:`run_execution` invokes a compiled variant's graph on one test case under
pause/checkpoint control, records the execution in the execution index, scores
it with the project's evaluators and tells its :class:`ExecutionHooks` (the
batch layer attaches its observers there).
"""

from __future__ import annotations

import contextlib
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from langgraph.errors import GraphDrained
from prefect.context import FlowRunContext

from wtb_prefect.analysis.evaluation import score_case
from wtb_prefect.define.project import WorkflowProject
from wtb_prefect.define.state import TestCase
from wtb_prefect.errors import BudgetExceeded, StateStorageError
from wtb_prefect.results import ErrorInfo, ExecutionResult, NodeRecord
from wtb_prefect.run.context import CompiledVariant, ExecutionContext, set_current_execution
from wtb_prefect.run.control import CHECKPOINT, controlled_run
from wtb_prefect.run.execution_index import ExecutionIndex, storage_failure
from wtb_prefect.run.node_cache import NodeSharing
from wtb_prefect.run.spend import SpendLedger

__all__ = ["ExecutionHooks", "ExecutionItem", "current_flow_run_id", "run_execution"]


@dataclass
class ExecutionItem:
    """One execution to run: a compiled variant combination on one test case."""

    compiled: CompiledVariant
    case: TestCase
    raw_case: Mapping[str, Any]
    execution_id: str
    resume: bool = False
    """Continue the execution's thread from its latest checkpoint (when it has one)."""
    done: ExecutionResult | None = None
    """The stored result of an execution that finished before; it is not run again."""
    repetition: int = 0
    """Which independent sample of (variant, case) this is; node calls are shared only within one."""


class ExecutionHooks:
    """Callbacks around one execution; the default does nothing."""

    def on_execution_start(self, item: ExecutionItem) -> None:
        """In the execution's thread, before ``graph.invoke``."""

    def on_node_end(self, item: ExecutionItem, record: NodeRecord) -> None:
        """Right after a node's body returned or raised, before LangGraph checkpoints its writes."""

    def on_execution_end(self, item: ExecutionItem, result: ExecutionResult) -> None:
        """After the result (and scores) are known, before it is stored in the index."""


def current_flow_run_id() -> str | None:
    """The id of the Prefect flow run this code runs in, if any."""
    flow_ctx = FlowRunContext.get()
    return str(flow_ctx.flow_run.id) if flow_ctx and flow_ctx.flow_run else None


def _invoke(
    item: ExecutionItem, index: ExecutionIndex, config: dict[str, Any], durability: str, result: ExecutionResult
) -> Any:
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
        with controlled_run(item.execution_id, index) as control:
            try:
                return graph.invoke(graph_input, config, durability=durability, control=control)
            except GraphDrained as drained:
                if drained.reason != CHECKPOINT:
                    raise
        index.set_request(item.execution_id, None)
        graph_input = None


def run_execution(
    item: ExecutionItem,
    *,
    project: WorkflowProject,
    index: ExecutionIndex,
    durability: str,
    batch_id: str | None,
    hooks: ExecutionHooks | None = None,
    sharing: NodeSharing | None = None,
    spend: SpendLedger | None = None,
) -> ExecutionResult:
    """Run (or resume) one execution to its end, failure or pause; record it in the index.

    ``sharing``: the batch's node-call sharing (identical node calls run once).
    ``spend``: the batch's spend ledger (prices, budget, per-execution cost limit); an
    execution whose next node call the budget refuses stops ``paused`` at its last checkpoint.

    Raises:
        StateStorageError: the checkpoints or the index could not be written (disk
            full or failing); the execution is left interrupted at its last checkpoint.
    """
    try:
        return _run_execution(
            item,
            project=project,
            index=index,
            durability=durability,
            batch_id=batch_id,
            hooks=hooks,
            sharing=sharing,
            spend=spend,
        )
    except Exception as exc:
        reason = storage_failure(exc)
        if reason is None:
            raise
        with contextlib.suppress(Exception):  # the index may be on the full disk too
            index.set_status(item.execution_id, "interrupted")
        resume = f"run_batch_test({project.name!r}, resume={batch_id!r})" if batch_id else "wtb.resume(execution_id)"
        raise StateStorageError(
            f"the state of execution {item.execution_id!r} could not be written ({reason}): the disk of the "
            f"state folder {index.path.parent} (or of the checkpoint storage) is full or failing. The "
            "execution stopped at its last checkpoint, and every result and checkpoint stored before is kept. "
            f"Fix: free space there, then run {resume}",
            batch_id=batch_id,
            execution_id=item.execution_id,
        ) from exc
    finally:
        index.release(item.execution_id)


def _run_execution(
    item: ExecutionItem,
    *,
    project: WorkflowProject,
    index: ExecutionIndex,
    durability: str,
    batch_id: str | None,
    hooks: ExecutionHooks | None = None,
    sharing: NodeSharing | None = None,
    spend: SpendLedger | None = None,
) -> ExecutionResult:
    hooks = hooks or ExecutionHooks()
    compiled = item.compiled
    ctx = ExecutionContext(
        item.execution_id, compiled.label, item.case.case_id, repetition=item.repetition, sharing=sharing, spend=spend
    )
    ctx.on_node_end = lambda record: hooks.on_node_end(item, record)
    token = set_current_execution(ctx)
    config = {
        "configurable": {"thread_id": item.execution_id},
        "recursion_limit": project.execution.recursion_limit,
        "run_name": f"{project.name}:{compiled.label}:{item.case.case_id}",
    }
    result = ExecutionResult(
        execution_id=item.execution_id,
        project=project.name,
        variant=compiled.choice.as_dict(),
        variant_label=compiled.label,
        status="running",
        initial_state=item.case.input,
        case_id=item.case.case_id,
        expected=item.case.expected,
        batch_id=batch_id,
        flow_run_id=current_flow_run_id(),
        provenance=compiled.provenance(),
        started_at=time.time(),
        repetition=item.repetition,
    )
    index.mark_running(item.execution_id, flow_run_id=result.flow_run_id)
    hooks.on_execution_start(item)
    t0 = time.perf_counter()
    try:
        output = _invoke(item, index, config, durability, result)
        snapshot = compiled.graph.get_state(config)
        result.final_state = output
        result.status = "paused" if snapshot.next else "completed"
        result.provenance["checkpoint_id"] = snapshot.config["configurable"].get("checkpoint_id")
    except (GraphDrained, BudgetExceeded) as stopped:
        # a budget reached stops the execution like a pause: resumable, nothing that finished runs again
        snapshot = compiled.graph.get_state(config)
        result.final_state = snapshot.values
        result.status = "paused"
        result.provenance["checkpoint_id"] = snapshot.config["configurable"].get("checkpoint_id")
        if isinstance(stopped, BudgetExceeded):
            result.provenance["stopped_by"] = "budget"
    except Exception as exc:
        if storage_failure(exc) is not None:
            raise  # not the execution's failure: it stops resumable (see run_execution)
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
    if result.status == "completed" and project.evaluators:
        # an evaluator that raises leaves its score out; the execution itself ran fine
        result.scores, result.evaluator_errors = score_case(
            project.evaluators, result.final_state, item.raw_case, item.case.case_id
        )
    hooks.on_execution_end(item, result)  # may add provenance: store after it
    index.finish(result)
    return result
