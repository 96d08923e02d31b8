"""Results of single executions: plain data, shared by every layer.

A batch's results, with their statistics, are
:class:`wtb_prefect.analysis.batch_result.BatchTestResult`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["ErrorInfo", "ExecutionResult", "NodeRecord"]

Status = Literal["completed", "failed", "paused", "running"]


@dataclass
class ErrorInfo:
    """Why an execution or a node failed."""

    type: str
    message: str
    node: str | None = None
    traceback: str = ""

    def __str__(self) -> str:
        where = f" in node {self.node!r}" if self.node else ""
        return f"{self.type}{where}: {self.message}"


@dataclass
class NodeRecord:
    """One run of one node inside an execution."""

    node: str
    implementation: str
    version: str
    started_at: float
    duration_s: float
    status: Literal["completed", "failed"]
    output: Any = None
    error: ErrorInfo | None = None
    task_run_id: str | None = None
    resources: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    run_s: float | None = None
    """Seconds the body itself ran in its Ray worker (summed over attempts); None when it ran in the driver."""

    @property
    def own_time_s(self) -> float:
        """The node's own run time: ``run_s`` when known, else ``duration_s``."""
        return self.run_s if self.run_s is not None else self.duration_s

    @property
    def queue_s(self) -> float:
        """Seconds the node waited outside its body: for a worker, resources, Prefect (0 when unknown)."""
        return max(0.0, self.duration_s - self.run_s) if self.run_s is not None else 0.0

    reuse: Literal["computed", "shared", "cached"] = "computed"
    """computed: the body ran; shared: the value of an identical call of this batch;
    cached: the value of an identical call of an earlier batch (node-call cache)."""
    call_key: str | None = None
    """The node-call key (None when the call was not shared: opted out or sharing off)."""
    reused_from: str | None = None
    """The Prefect task run that computed a reused value."""
    saved_s: float = 0.0
    """Node time a reused call saved: how long the computing task run took."""
    usage: dict[str, dict[str, int]] | None = None
    """Tokens of the chat-model calls the body made, per model: ``input`` (cached included),
    ``output`` (reasoning included), ``cache_read``, ``reasoning`` and ``calls``; captured from
    LangChain's usage records with no code in the node (None: no model call was seen)."""
    cost_usd: float = 0.0
    """Dollars those calls cost at the batch's prices (a model without a price adds nothing: see ``unpriced_models``)."""
    saved_usage: dict[str, dict[str, int]] | None = None
    """For a reused call (shared or cached): the usage of the call it reused, not spent again."""
    saved_usd: float = 0.0
    """For a reused call: what the call it reused cost, saved here."""
    unpriced_models: list[str] | None = None
    """Models of ``usage`` the price table does not know (counted in tokens, not in ``cost_usd``)."""
    lane: Literal["io", "task"] | None = None
    """Where the body ran on Ray: an I/O lane's actor ("io") or a Ray task of its own ("task"); None in the driver."""
    lane_reason: str = ""
    """Why: ``async def``, ``io_bound=True/False``, an explicit resource request, or what its first calls measured."""
    rate_limited: int = 0
    """Rate-limit answers of the provider its limit group absorbed (the call went again; no retry spent)."""


@dataclass
class ExecutionResult:
    """The outcome of one execution (one LangGraph thread).

    ``final_state`` is exactly what ``graph.invoke`` returned; for a failed
    or paused execution it is the state of the last checkpoint.
    """

    execution_id: str
    project: str
    variant: dict[str, str]
    variant_label: str
    status: Status
    initial_state: dict[str, Any]
    final_state: Any = None
    error: ErrorInfo | None = None
    nodes: list[NodeRecord] = field(default_factory=list)
    started_at: float = 0.0
    duration_s: float = 0.0
    case_id: str = ""
    expected: Any = None
    batch_id: str | None = None
    flow_run_id: str | None = None
    scores: dict[str, float] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    repetition: int = 0
    """Which of the batch's ``repetitions`` independent samples of (variant, case) this is (0-based)."""
    evaluator_errors: dict[str, ErrorInfo] = field(default_factory=dict)
    """Why each evaluator that raised on this execution has no score (the status is unchanged)."""

    @property
    def ok(self) -> bool:
        """True when the execution completed."""
        return self.status == "completed"

    @property
    def node_timings(self) -> dict[str, float]:
        """Seconds spent in each node (summed when a node ran more than once)."""
        timings: dict[str, float] = {}
        for record in self.nodes:
            timings[record.node] = timings.get(record.node, 0.0) + record.duration_s
        return timings

    @property
    def node_outputs(self) -> dict[str, list[Any]]:
        """What each node returned, in order of its runs."""
        outputs: dict[str, list[Any]] = {}
        for record in self.nodes:
            outputs.setdefault(record.node, []).append(record.output)
        return outputs

    @property
    def metrics(self) -> dict[str, float]:
        """Every number recorded for this execution (see :mod:`wtb_prefect.analysis.evaluation`).

        ``success`` and ``error`` (1.0 or 0.0), ``latency_s`` (end to end),
        ``run_s`` (the nodes' own run time, what variant comparisons use for
        latency), ``queue_s`` (the nodes' wait for workers and resources),
        ``node.<node>.latency_s``, ``node.<node>.run_s``, what nodes reported with
        :func:`wtb_prefect.log_node_metrics` as ``node.<node>.<name>`` and
        summed as ``total.<name>``, and the evaluator scores. When a node called a
        chat model: ``cost_usd`` and ``saved_usd`` (dollars spent, and not spent
        again thanks to reused calls), ``tokens.input`` / ``tokens.output`` /
        ``tokens.cache_read`` / ``tokens.reasoning``, ``llm_calls``, and the same
        per node as ``node.<node>.cost_usd``, ``node.<node>.tokens.input``, ...
        """
        metrics: dict[str, float] = {
            "success": 1.0 if self.status == "completed" else 0.0,
            "error": 1.0 if self.status == "failed" else 0.0,
            "latency_s": self.duration_s,
            "run_s": sum(record.own_time_s for record in self.nodes),
            "queue_s": sum(record.queue_s for record in self.nodes),
        }
        for node, seconds in self.node_timings.items():
            metrics[f"node.{node}.latency_s"] = seconds
        for record in self.nodes:
            key = f"node.{record.node}.run_s"
            metrics[key] = metrics.get(key, 0.0) + record.own_time_s
        for record in self.nodes:
            for name, value in record.metrics.items():
                key = f"node.{record.node}.{name}"
                metrics[key] = metrics.get(key, 0.0) + value
                metrics[f"total.{name}"] = metrics.get(f"total.{name}", 0.0) + value
        metrics.update(_cost_metrics(self.nodes))
        metrics.update(self.scores)
        return metrics

    @property
    def cost_usd(self) -> float:
        """Dollars the execution's chat-model calls cost (reused calls cost nothing here)."""
        return sum(record.cost_usd for record in self.nodes)

    @property
    def saved_usd(self) -> float:
        """Dollars its reused node calls (shared or cached) did not spend again."""
        return sum(record.saved_usd for record in self.nodes)

    @property
    def usage(self) -> dict[str, dict[str, int]]:
        """Tokens spent per model, summed over the node runs (see :attr:`NodeRecord.usage`)."""
        return _sum_usage(record.usage for record in self.nodes)

    def row(self) -> dict[str, Any]:
        """A flat, table-friendly summary of this execution."""
        return {
            "variant": self.variant_label,
            "case": self.case_id,
            **({"repetition": self.repetition} if self.repetition else {}),
            "status": self.status,
            "latency_s": round(self.duration_s, 4),
            **{f"node.{n}_s": round(t, 4) for n, t in self.node_timings.items()},
            **({"cost_usd": round(self.cost_usd, 6)} if any(r.usage or r.saved_usage for r in self.nodes) else {}),
            **{k: v for k, v in self.scores.items()},
            "error": str(self.error) if self.error else "",
            **(
                {"evaluator_errors": "; ".join(f"{n}: {e}" for n, e in self.evaluator_errors.items())}
                if self.evaluator_errors
                else {}
            ),
            "execution_id": self.execution_id,
        }


TOKEN_KINDS = ("input", "output", "cache_read", "reasoning")
"""The token counts booked per model (besides ``calls``)."""


def _sum_usage(usages: Any) -> dict[str, dict[str, int]]:
    total: dict[str, dict[str, int]] = {}
    for usage in usages:
        for model, counts in (usage or {}).items():
            row = total.setdefault(model, {})
            for kind, n in counts.items():
                row[kind] = row.get(kind, 0) + int(n)
    return total


def _cost_metrics(nodes: list[NodeRecord]) -> dict[str, float]:
    """``cost_usd``, ``saved_usd``, ``tokens.<kind>`` and ``llm_calls``, in total and per node (``node.<node>.``).

    Empty when no node run saw a model call.
    """
    out: dict[str, float] = {"cost_usd": 0.0, "saved_usd": 0.0}
    seen = False
    for record in nodes:
        if not (record.usage or record.saved_usage):
            continue
        seen = True
        prefix = f"node.{record.node}."
        for key, value in (("cost_usd", record.cost_usd), ("saved_usd", record.saved_usd)):
            out[key] += value
            out[prefix + key] = out.get(prefix + key, 0.0) + value
        for counts in (record.usage or {}).values():
            for kind in TOKEN_KINDS:
                for key in (f"tokens.{kind}", f"{prefix}tokens.{kind}"):
                    out[key] = out.get(key, 0.0) + float(counts.get(kind, 0))
            for key in ("llm_calls", f"{prefix}llm_calls"):
                out[key] = out.get(key, 0.0) + float(counts.get("calls", 0))
    if not seen:  # a run without model calls records no cost (views show a cost column only where there is one)
        return {}
    for kind in TOKEN_KINDS:
        out.setdefault(f"tokens.{kind}", 0.0)
    out.setdefault("llm_calls", 0.0)
    return out
