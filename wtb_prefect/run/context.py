"""The types every module of ``run/`` shares: the node plan, the compiled variant, the running execution.

They live in this leaf module (it imports nothing else of ``run/``, nor
Prefect) so that compiling, dispatching, the node cache, node scopes and spans
can all name them without importing one another.
"""

from __future__ import annotations

import contextvars
import copy
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from langgraph.graph.state import CompiledStateGraph

from wtb_prefect.config import NodeResourceConfig
from wtb_prefect.define.resolution import VariantChoice
from wtb_prefect.results import NodeRecord

__all__ = [
    "BatchExecutor",
    "CompiledVariant",
    "ExecutionContext",
    "NodePlan",
    "current_execution",
    "set_current_execution",
]

BatchExecutor = Literal["ray", "threadpool", "sequential"]
"""How a batch runs its node bodies: ``ExecutionConfig.batch_executor``."""


@dataclass
class ExecutionContext:
    """What the node wrappers of one running execution record into."""

    execution_id: str
    variant_label: str
    case_id: str
    records: list[NodeRecord] = field(default_factory=list)
    failed_node: str | None = None
    on_node_end: Callable[[NodeRecord], None] | None = field(default=None, repr=False)
    repetition: int = 0
    sharing: Any = field(default=None, repr=False)
    """The batch's :class:`~wtb_prefect.run.node_cache.NodeSharing` (None: every call runs)."""
    spend: Any = field(default=None, repr=False)
    """The batch's :class:`~wtb_prefect.run.spend.SpendLedger`: prices, budget, per-execution cost limit."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, record: NodeRecord) -> None:
        with self._lock:
            self.records.append(record)
            if record.status == "failed":
                self.failed_node = record.node
        if self.on_node_end is not None:
            self.on_node_end(record)


_current: contextvars.ContextVar[ExecutionContext | None] = contextvars.ContextVar(
    "wtb_current_execution", default=None
)


def current_execution() -> ExecutionContext | None:
    """The execution whose node is running in this context, if any."""
    return _current.get()


def set_current_execution(ctx: ExecutionContext | None) -> contextvars.Token:
    """Make ``ctx`` the current execution of this context."""
    return _current.set(ctx)


@dataclass
class NodePlan:
    """Everything needed to dispatch one node of one compiled variant."""

    node: str
    func: Callable[..., Any]
    accepts: dict[str, Any]
    implementation: str
    version: str
    ray_options: dict[str, Any]
    timeout_s: float
    retries: int
    retry_delay_s: float
    resources: dict[str, Any]
    request: NodeResourceConfig | None = None
    """``resources`` as the validated model (what Ray is asked for)."""
    environment: dict[str, Any] | None = None
    """The node's uv environment: spec, key and resolved lock (None = the driver's environment)."""
    task: Any = field(default=None, repr=False)
    """The node's Prefect task, named after the node, with its timeout and retries (set by ``compile``)."""

    def prefect_task(self) -> Any:
        """The node's Prefect task (:attr:`task`)."""
        return self.task


@dataclass
class CompiledVariant:
    """A variant combination compiled to a dispatching LangGraph graph."""

    project: str
    choice: VariantChoice
    graph: CompiledStateGraph
    state_schema: type | None
    nodes: dict[str, NodePlan]
    inline_nodes: list[str] = field(default_factory=list)
    project_version: str = "1.0"

    @property
    def label(self) -> str:
        """The variant combination's label."""
        return self.choice.label

    def provenance(self) -> dict[str, Any]:
        """The exact implementation versions, resources and environments this variant runs."""
        return {
            "project": self.project,
            "project_version": self.project_version,
            "workflow_variant": self.choice.workflow,
            "variant": self.choice.as_dict(),
            "nodes": {
                name: {
                    "implementation": plan.implementation,
                    "version": plan.version,
                    "resources": plan.resources,
                    # spec, env key and resolved lock (None = the driver's environment)
                    "environment": copy.deepcopy(plan.environment),
                }
                for name, plan in self.nodes.items()
            },
        }
