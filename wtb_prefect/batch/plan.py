"""A batch's plan: its variants compiled, its executions listed, everything validated.

:func:`prepare_batch` (and :func:`prepare_batch_resume`, :func:`prepare_resume`)
do every check that can fail before any work starts. A :class:`BatchPlan` is
plain data: what runs, not how it is watched (observers belong to the running
batch, see :mod:`wtb_prefect.batch.execute`).

When Python or the CLI starts a flow, it prepares the plan first (so bad input
fails before a flow run exists), offers it with :func:`offer_plan`, and calls
the flow with :meth:`BatchPlan.flow_parameters`. The flow claims the plan only
when its own parameters are exactly those: what the Prefect UI shows as the
flow run's parameters is what ran.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from wtb_prefect.batch.gate import RegressionGate, prepare_gate
from wtb_prefect.batch.race import BatchRace, load_race, prepare_race
from wtb_prefect.config import NodeResourceConfig, RaceConfig
from wtb_prefect.define.project import WorkflowProject
from wtb_prefect.define.resolution import parse_variant_choice
from wtb_prefect.define.state import split_test_case, validate_state
from wtb_prefect.errors import ConfigError, ExecutionStateError, StateValidationError
from wtb_prefect.run.checkpoints import durability_for, open_checkpointer
from wtb_prefect.run.compile import compile_variant
from wtb_prefect.run.context import BatchExecutor, CompiledVariant
from wtb_prefect.run.execution import ExecutionItem
from wtb_prefect.run.execution_index import ExecutionIndex, ExecutionRecord, open_index
from wtb_prefect.run.node_cache import NodeSharing, build_sharing
from wtb_prefect.run.spend import SpendLedger, build_ledger
from wtb_prefect.settings import WTBSettings, get_settings

__all__ = [
    "BatchPlan",
    "claim_plan",
    "offer_plan",
    "prepare_batch",
    "prepare_batch_resume",
    "prepare_resume",
]


@dataclass
class BatchPlan:
    """A validated batch: compiled variants, test cases, execution ids, the regression gate."""

    project: WorkflowProject
    batch_id: str
    variants: list[CompiledVariant]
    items: list[ExecutionItem]
    mode: BatchExecutor
    concurrency: int
    durability: str
    index: ExecutionIndex = field(repr=False)
    variant_matrix: list[dict[str, str]] = field(default_factory=list, repr=False)
    test_cases: list[dict[str, Any]] = field(default_factory=list, repr=False)
    parallelism: int | None = None
    gate: RegressionGate | None = None
    regression_gate: dict[str, Any] | None = field(default=None, repr=False)
    """The gate as given (the flow parameter); ``gate`` is its validated form."""
    resume_of: str | None = None
    """The batch id this plan finishes (``resume=``), if any."""
    resources_checked: bool = False
    """Ray was joined and every node's request checked against the cluster."""
    repetitions: int = 1
    """Independent samples per (variant, case); node calls are shared only within one repetition."""
    sharing: NodeSharing | None = field(default=None, repr=False)
    """Node-call sharing of this batch (None: ``node_cache="off"``)."""
    race: BatchRace | None = field(default=None, repr=False)
    """The batch's race (:mod:`wtb_prefect.batch.race`); None runs the full matrix."""
    spend: SpendLedger | None = field(default=None, repr=False)
    """What this run of the batch spends on model calls: prices, budget, per-execution limit."""
    budget_usd: float | None = None
    """The budget given to this run (the flow parameter; None: ``ExecutionConfig.budget_usd``)."""

    def resource_requests(self) -> dict[str, NodeResourceConfig]:
        """Each dispatched node's Ray request, keyed by a readable name."""
        requests: dict[str, NodeResourceConfig] = {}
        for variant in self.variants:
            for name, plan in variant.nodes.items():
                key = name if variant.label == "default" else f"{name} (variant {variant.label})"
                requests[key] = plan.request or NodeResourceConfig.model_validate(plan.resources)
        return requests

    def flow_parameters(self) -> dict[str, Any]:
        """The parameters of the ``wtb-batch-test`` flow run that runs this plan."""
        budget = {"budget_usd": self.budget_usd} if self.budget_usd is not None else {}
        if self.resume_of is not None:
            return {
                "project": self.project.name,
                "resume": self.resume_of,
                "parallelism": self.parallelism,
                "regression_gate": self.regression_gate,
                **budget,
            }
        repetitions = {"repetitions": self.repetitions} if self.repetitions != 1 else {}
        race = {"race": self.race.config.model_dump(exclude_defaults=True)} if self.race is not None else {}
        return {
            **repetitions,
            **race,
            "project": self.project.name,
            "variant_matrix": self.variant_matrix,
            "test_cases": self.test_cases,
            "parallelism": self.parallelism,
            "regression_gate": self.regression_gate,
            "batch_id": self.batch_id,
            **budget,
        }


_offered: dict[str, tuple[BatchPlan, dict[str, Any]]] = {}
_offered_lock = threading.Lock()


def offer_plan(key: str, plan: BatchPlan, parameters: Mapping[str, Any]) -> None:
    """Let the next flow run of this process keyed ``key`` (a batch or execution id) run
    ``plan``, provided it is called with exactly ``parameters``."""
    with _offered_lock:
        _offered[key] = (plan, dict(parameters))


def claim_plan(key: str | None, parameters: Mapping[str, Any]) -> BatchPlan | None:
    """The plan offered under ``key`` if the flow run's ``parameters`` are the ones it was
    offered with, else None (the flow then prepares its plan from its parameters).
    A plan is claimed once."""
    if key is None:
        return None
    with _offered_lock:
        offered = _offered.pop(key, None)
    if offered is None:
        return None
    plan, expected = offered
    given = {k: v for k, v in parameters.items() if k in expected}
    return plan if given == expected else None


def prepare_batch(
    project: WorkflowProject,
    variant_matrix: Sequence[Mapping[str, str]] | None,
    test_cases: Sequence[Mapping[str, Any]],
    *,
    parallelism: int | None = None,
    batch_id: str | None = None,
    execution_ids: Sequence[str] | None = None,
    regression_gate: Mapping[str, Any] | None = None,
    settings: WTBSettings | None = None,
    repetitions: int | None = None,
    race: RaceConfig | Mapping[str, Any] | None = None,
    budget_usd: float | None = None,
) -> BatchPlan:
    """Validate a batch and compile its variants; no work starts here.

    With ``repetitions=k`` (default ``ExecutionConfig.repetitions``) each
    (variant, case) runs k times as independent samples (execution ids end
    in ``-r<i>``); node calls are shared only within one repetition.

    With ``race`` (default ``ExecutionConfig.race``) the batch runs as a race
    (:mod:`wtb_prefect.batch.race`): cases round by round, decided variants dropped.

    Raises:
        UnknownVariantError, UnknownNodeError: a bad ``variant_matrix`` entry.
        StateValidationError: a test case that does not fit the state schema.
        ConfigError: an empty matrix or case list, a repeated combination, a
            bad ``parallelism``, regression gate or race.
    """
    settings = settings or get_settings()
    matrix = list(variant_matrix) if variant_matrix else [{}]
    if not isinstance(test_cases, Sequence) or isinstance(test_cases, (str, bytes)) or not test_cases:
        raise ConfigError("test_cases", "is empty or not a list", "give a list of at least one initial-state dict")
    if parallelism is not None and parallelism < 1:
        raise ConfigError("parallelism", f"is {parallelism}", "give a positive number of concurrent executions")
    if repetitions is None:
        repetitions = project.execution.repetitions
    if isinstance(repetitions, bool) or not isinstance(repetitions, int) or repetitions < 1:
        raise ConfigError(
            "repetitions", f"is {repetitions!r}", "give a whole number of at least 1 (independent samples per case)"
        )
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
    spend = build_ledger(execution, budget_usd)  # a bad budget, price or prices file fails here
    mode: BatchExecutor = execution.batch_executor
    race_plan = prepare_race(
        # a project's default race applies to batches with something to race; one given here always does
        race if race is not None else (execution.race if len(choices) > 1 else None),
        labels=[c.label for c in choices],
        evaluators=list(project.evaluators),
        cases=len(test_cases),
        repetitions=repetitions,
        concurrency=1 if mode == "sequential" else (parallelism or execution.ray_config.max_concurrent_workflows),
    )
    checkpointer = open_checkpointer(execution, settings.project_dir(project.name))
    variants = [compile_variant(project, c, mode=mode, checkpointer=checkpointer) for c in choices]
    batch_id = batch_id or uuid.uuid4().hex[:12]
    items: list[ExecutionItem] = []
    # Case-major order (case 0 of every variant, then case 1, ...): executions of the
    # variants interleave, so none of them absorbs the batch's warm-up (worker start).
    for c_index, raw in enumerate(test_cases):
        for v_index, variant in enumerate(variants):
            case = split_test_case(raw, variant.state_schema, c_index)
            try:
                validate_state(variant.state_schema, case.input, where=f"test_cases[{c_index}]")
            except StateValidationError as exc:
                raise StateValidationError(f"{exc} (variant {variant.label})") from exc
            for rep in range(repetitions):
                position = len(items)
                suffix = f"-r{rep}" if repetitions > 1 else ""
                execution_id = (
                    execution_ids[position]
                    if execution_ids
                    else f"{project.name}-{batch_id}-v{v_index}-c{c_index}{suffix}"
                )
                items.append(ExecutionItem(variant, case, raw, execution_id, repetition=rep))
    concurrency = 1 if mode == "sequential" else (parallelism or execution.ray_config.max_concurrent_workflows)
    plan = BatchPlan(
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
        regression_gate=dict(regression_gate) if regression_gate else None,
        repetitions=repetitions,
        sharing=build_sharing(project, batch_id, variants, settings.state_dir),
        spend=spend,
        budget_usd=spend.budget_usd if budget_usd is not None else None,
        race=race_plan,
    )
    plan.gate = prepare_gate(list(project.evaluators), plan.variants, regression_gate)
    return plan


def prepare_batch_resume(
    project: WorkflowProject,
    batch_id: str,
    *,
    parallelism: int | None = None,
    regression_gate: Mapping[str, Any] | None = None,
    settings: WTBSettings | None = None,
    budget_usd: float | None = None,
) -> BatchPlan:
    """The plan that finishes batch ``batch_id`` after its driver stopped or was killed
    (or stopped at its budget: ``budget_usd`` is what this run may spend).

    The batch's variant matrix and test cases come from the execution index.
    Executions that completed or failed are not run again (their stored
    results are reused); interrupted and paused ones continue from their
    latest checkpoint; the others run from the start. A race goes on with its
    stored settings: the stored results are replayed through the same
    decisions, and the race continues where it stopped.

    Raises:
        ConfigError: the index has no such batch, or it belongs to another project.
        ExecutionStateError: an execution of the batch is still running in a live process.
    """
    settings = settings or get_settings()
    index = open_index(settings.state_dir)
    record = index.batch(batch_id)
    if record is None:
        raise ConfigError(
            "resume",
            f"names batch {batch_id!r}, which the execution index {index.path} does not have",
            "give the batch_id of an earlier run_batch_test (see wtb.list_batches())",
        )
    if record.project != project.name:
        raise ConfigError(
            "resume",
            f"batch {batch_id!r} belongs to project {record.project!r}, not {project.name!r}",
            f"call run_batch_test(project={record.project!r}, resume={batch_id!r})",
        )
    pairs = max(1, len(record.variant_matrix or [{}]) * len(record.test_cases))
    plan = prepare_batch(
        project,
        record.variant_matrix,
        record.test_cases,
        parallelism=parallelism or record.parallelism,
        batch_id=batch_id,
        regression_gate=regression_gate,
        settings=settings,
        repetitions=max(1, len(index.list(batch_id=batch_id)) // pairs),  # the index has every repetition
        budget_usd=budget_usd,
    )
    plan.resume_of = batch_id
    plan.parallelism = parallelism
    stored = load_race(settings.state_dir, batch_id)
    plan.race = None  # a resume races only a batch that was a race
    if stored is not None:
        config, per_round = stored
        plan.race = prepare_race(
            config,
            labels=[v.label for v in plan.variants],
            evaluators=list(project.evaluators),
            cases=len(plan.test_cases),
            repetitions=plan.repetitions,
            concurrency=plan.concurrency,
            cases_per_round=per_round,
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
        project,
        [record.variant],
        [record.test_case],
        batch_id=record.batch_id,
        execution_ids=[record.execution_id],
        settings=settings,
    )
    plan.items[0].resume = True
    repetition = re.search(r"-r(\d+)$", record.execution_id)  # shares only with its own repetition
    plan.items[0].repetition = int(repetition.group(1)) if repetition and record.batch_id else 0
    return plan
