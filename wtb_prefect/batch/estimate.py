"""What a planned batch will cost, from the project's recorded history, before any node runs.

:func:`estimate_plan` prices a :class:`~wtb_prefect.batch.plan.BatchPlan`
(prepared and validated, nothing started) from the node runs the execution
index holds for the project:

* per node implementation, the mean cost of one computed call (reused calls
  cost nothing and are left out of the mean) and the mean number of runs per
  execution (a node in a loop runs several times);
* with node-call sharing on, calls the plan makes twice are counted once: a
  node's call in two executions is the same call when the two run the same
  case and repetition with the same implementations of that node and of every
  node upstream of it (its input is then the same). Hits in a persistent
  node-call cache from earlier batches are not predicted (the estimate is an
  upper bound there).

Nodes whose implementation has no recorded calls are listed in
``no_history`` and priced at nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from wtb_prefect.results import ExecutionResult
from wtb_prefect.run.context import CompiledVariant
from wtb_prefect.run.execution_index import ExecutionIndex

__all__ = ["BatchEstimate", "NodeHistory", "estimate_plan", "node_history", "recorded_results"]


@dataclass
class NodeHistory:
    """What the recorded runs of one node implementation cost."""

    calls: int = 0
    """Computed calls recorded (reused ones excluded)."""
    cost_usd: float = 0.0
    """Their total cost."""
    runs: int = 0
    """Runs of the node recorded (computed or reused)."""
    executions: int = 0
    """Executions that ran the node at least once."""
    tokens: dict[str, int] = field(default_factory=dict)

    @property
    def usd_per_call(self) -> float:
        return self.cost_usd / self.calls if self.calls else 0.0

    @property
    def runs_per_execution(self) -> float:
        return self.runs / self.executions if self.executions else 1.0


@dataclass
class BatchEstimate:
    """The predicted cost of a planned batch.

    Attributes:
        total_usd: predicted spend of the whole batch.
        by_variant: predicted spend per variant label (a shared call counts for the first variant that makes it).
        by_node: per node: predicted computed ``calls``, ``shared`` calls (reused), ``usd``.
        no_history: ``node (implementation)`` entries the index has no recorded call of (priced at 0).
        executions: executions planned.
        history_executions: recorded executions the estimate drew on.
    """

    total_usd: float
    by_variant: dict[str, float]
    by_node: dict[str, dict[str, float]]
    no_history: list[str]
    executions: int
    history_executions: int
    sharing: bool

    def __str__(self) -> str:
        lines = [
            f"estimated cost: ${self.total_usd:.4f} for {self.executions} executions "
            f"(from {self.history_executions} recorded executions; sharing {'on' if self.sharing else 'off'})"
        ]
        for label, usd in self.by_variant.items():
            lines.append(f"  {label}: ${usd:.4f}")
        if self.no_history:
            lines.append("  no history (priced at $0): " + ", ".join(self.no_history))
        return "\n".join(lines)


def node_history(results: Iterable[ExecutionResult]) -> dict[tuple[str, str], NodeHistory]:
    """Per (node, implementation): recorded computed calls and their cost, runs per execution."""
    history: dict[tuple[str, str], NodeHistory] = {}
    for result in results:
        seen: set[tuple[str, str]] = set()
        for record in result.nodes:
            key = (record.node, record.implementation)
            entry = history.setdefault(key, NodeHistory())
            entry.runs += 1
            if key not in seen:
                seen.add(key)
                entry.executions += 1
            if getattr(record, "reuse", "computed") == "computed" and record.status == "completed":
                entry.calls += 1
                entry.cost_usd += float(getattr(record, "cost_usd", None) or 0.0)
    return history


def _ancestors(variant: CompiledVariant) -> dict[str, set[str]]:
    """Each node's upstream nodes in the variant's graph (edges and conditional edges)."""
    drawn = variant.graph.get_graph()
    parents: dict[str, set[str]] = {}
    for edge in drawn.edges:
        parents.setdefault(edge.target, set()).add(edge.source)
    out: dict[str, set[str]] = {}
    for node in variant.nodes:
        seen: set[str] = set()
        stack = list(parents.get(node, ()))
        while stack:
            current = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            stack.extend(parents.get(current, ()))
        out[node] = {n for n in seen if n in variant.nodes}
    return out


def estimate_plan(plan: Any, results: Iterable[ExecutionResult]) -> BatchEstimate:
    """The predicted cost of ``plan`` (a ``BatchPlan``) from recorded ``results`` of its project."""
    recorded = list(results)
    history = node_history(recorded)
    sharing = plan.sharing is not None
    ancestors = {id(v): _ancestors(v) for v in plan.variants}
    seen_calls: set[tuple[Any, ...]] = set()
    by_variant: dict[str, float] = {}
    by_node: dict[str, dict[str, float]] = {}
    missing: set[str] = set()
    for item in plan.items:
        if item.done is not None:
            continue
        variant = item.compiled
        label = variant.label
        by_variant.setdefault(label, 0.0)
        for name, node_plan in variant.nodes.items():
            entry = history.get((name, node_plan.implementation))
            row = by_node.setdefault(name, {"calls": 0.0, "shared": 0.0, "usd": 0.0})
            if entry is None or entry.calls == 0:
                missing.add(f"{name} ({node_plan.implementation})")
                continue
            runs = entry.runs_per_execution
            if sharing:
                upstream = tuple(sorted((n, variant.nodes[n].implementation) for n in ancestors[id(variant)][name]))
                key = (item.case.case_id, item.repetition, name, node_plan.implementation, upstream)
                if key in seen_calls:
                    row["shared"] += runs
                    continue
                seen_calls.add(key)
            usd = runs * entry.usd_per_call
            row["calls"] += runs
            row["usd"] += usd
            by_variant[label] += usd
    return BatchEstimate(
        total_usd=sum(by_variant.values()),
        by_variant=by_variant,
        by_node=by_node,
        no_history=sorted(missing),
        executions=sum(1 for i in plan.items if i.done is None),
        history_executions=len(recorded),
        sharing=sharing,
    )


def recorded_results(index: ExecutionIndex, project: str) -> list[ExecutionResult]:
    """The stored results of the project's executions (the history an estimate draws on)."""
    results = []
    for record in index.list(project=project):
        if record.finished or record.status == "paused":
            result = index.result(record.execution_id)
            if result is not None:
                results.append(result)
    return results
