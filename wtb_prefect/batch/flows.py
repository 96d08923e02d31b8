"""The two Prefect flows of wtb_prefect, each defined once: ``wtb-batch-test`` and ``wtb-run``.

Python (:class:`~wtb_prefect.bench.WTBTestBench`), the ``wtb`` CLI and Prefect
deployments (``prefect.yaml``, ``flows/``) all start these flows with the
same parameters, so the parameters the Prefect UI shows are what ran. Their
parameters are validated by pydantic (the UI shows a form, and a bad value
fails before any work starts). The project is named by reference: a name
registered in this process, ``package.module:attribute``, a project YAML path
or ``wtb-project/<block>``; the matrix and the cases are given inline, as a
JSON/YAML file path or as ``package.module:attribute``.

When Python or the CLI starts a flow, it has validated the plan already
(before any flow run exists) and offered it (:func:`~wtb_prefect.batch.plan.offer_plan`);
the flow runs that plan only if its parameters are the ones the plan was made from.

Example:
    ```bash
    prefect deployment run 'wtb-batch-test/quickstart-on-demand' \\
        --param test_cases='[{"query": "What schedules tasks?", "expected": "ray"}]'
    ```
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from prefect import flow, get_run_logger
from prefect.runtime import flow_run as current_flow_run
from prefect.states import Failed
from pydantic import BaseModel, ConfigDict, Field

from wtb_prefect.analysis.batch_result import BatchTestResult
from wtb_prefect.batch.batch_ids import batch_id_for_flow_run, check_batch_id_reuse
from wtb_prefect.batch.execute import execute_plan
from wtb_prefect.batch.flow_runs import batch_flow_run_name
from wtb_prefect.batch.plan import claim_plan, prepare_batch, prepare_batch_resume, prepare_resume
from wtb_prefect.define.project import WorkflowProject
from wtb_prefect.define.registry import load_data, resolve_project
from wtb_prefect.errors import PrefectAPIUnavailableError, UnknownExecutionError, WTBError
from wtb_prefect.results import ExecutionResult
from wtb_prefect.run.execution_index import open_index
from wtb_prefect.run.task_runner import WTBRayTaskRunner
from wtb_prefect.settings import get_settings

__all__ = ["RegressionGateParameter", "batch_test_flow", "run_flow"]

ProjectRef = Annotated[str, Field(min_length=1)]
R = TypeVar("R")
Matrix = list[dict[str, str]] | str | None
Cases = list[dict[str, Any]] | str


class RegressionGateParameter(BaseModel):
    """Fail the flow run when a combination is worse than the baseline beyond a tolerance."""

    model_config = ConfigDict(extra="forbid")

    baseline: str | dict[str, str] | None = Field(
        default=None,
        description="Variant label or {node: variant}; empty = the matrix's first combination; 'previous' = "
        "each variant against itself in the previous completed run of this deployment.",
    )
    tolerances: dict[str, Any] | list[str] = Field(
        min_length=1,
        description="Metric -> allowed worsening: 0.05 (absolute) or '5%' (relative); "
        "or a list of 'metric=amount' strings.",
    )
    require_significance: bool = Field(
        default=False,
        description="Count a regression only when the paired verdict, corrected over the batch's tests, is 'worse'.",
    )


def _gate_dict(gate: RegressionGateParameter | dict[str, Any] | None) -> dict[str, Any] | None:
    if gate is None:
        return None
    # exclude_unset: the dict a caller gave stays the same dict, so the offered plan is claimed
    return gate.model_dump(exclude_unset=True) if isinstance(gate, BaseModel) else dict(gate)


def _batch_run_name() -> str:
    parameters = current_flow_run.parameters
    project = resolve_project(parameters["project"]).name
    batch_id = parameters.get("resume") or parameters.get("batch_id") or batch_id_for_flow_run(current_flow_run.id)
    return batch_flow_run_name(project, batch_id)


def _resumes(proj: WorkflowProject, batch_id: str, matrix: Any, cases: Any, repetitions: int | None) -> bool:
    """Whether ``batch_id`` is a batch of the index with these inputs (refused if its inputs differ)."""
    if not isinstance(cases, list) or (matrix is not None and not isinstance(matrix, list)):
        return False  # prepare_batch names what is wrong with them
    return check_batch_id_reuse(
        open_index(get_settings().state_dir),
        batch_id,
        project=proj.name,
        variant_matrix=matrix,
        test_cases=cases,
        repetitions=repetitions or proj.execution.repetitions,
    )


def _run_name() -> str:
    parameters = current_flow_run.parameters
    project = resolve_project(parameters["project"]).name
    execution_id = parameters.get("execution_id") or current_flow_run.id
    verb = "resume" if parameters.get("resume") else "run"
    return f"{project}-{verb}-{execution_id[-12:]}"


def _typed_errors_fail_the_run(body: Callable[..., R]) -> Callable[..., R]:
    """A typed error ends the flow run Failed with its message, and no traceback.

    The message of a :class:`~wtb_prefect.errors.WTBError` names what was wrong
    and the fix; raised, it would come with Prefect's engine logging the same
    traceback twice (as the flow's exception and again as the engine's), which
    buries it. Returned as the run's ``Failed`` state instead, it is logged once
    (``Finished in state Failed('ConfigError: ...')``), and a caller of the flow
    in Python still gets the error raised, since it is the state's result. An
    unreachable Prefect API is still raised: no state could be recorded then.
    """

    @functools.wraps(body)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return body(*args, **kwargs)
        except PrefectAPIUnavailableError:
            raise
        except WTBError as exc:
            get_run_logger().debug("the flow run failed on a typed error", exc_info=True)
            return Failed(message=f"{type(exc).__name__}: {exc}", data=exc)

    return run


@flow(
    name="wtb-batch-test",
    flow_run_name=_batch_run_name,
    task_runner=WTBRayTaskRunner(),
    persist_result=False,
    log_prints=True,
)
@_typed_errors_fail_the_run
def batch_test_flow(
    project: ProjectRef,
    test_cases: Cases | None = None,
    variant_matrix: Matrix = None,
    parallelism: Annotated[int | None, Field(ge=1)] = None,
    regression_gate: RegressionGateParameter | None = None,
    resume: str | None = None,
    batch_id: str | None = None,
    repetitions: Annotated[int | None, Field(ge=1)] = None,
    race: dict[str, Any] | None = None,
    budget_usd: float | None = None,
) -> BatchTestResult:
    """Run every variant combination on every test case; nodes are task runs on Ray.

    Args:
        project: a registered project name, 'package.module:attribute' (a WorkflowProject or a
            function returning one), a project YAML path, or 'wtb-project/<block name>'.
        test_cases: initial states (each may add 'expected' and 'case_id'); or a JSON/YAML
            file path, or 'package.module:attribute'.
        variant_matrix: variant combinations such as {"retriever": "bm25", "_workflow": "with_reranker"};
            empty = the defaults only; or a JSON/YAML file path, or 'package.module:attribute'.
        parallelism: executions computing at once (one waiting for an identical node call that
            another execution computes does not count meanwhile); empty = the project's
            max_concurrent_workflows.
        regression_gate: fail the run when a combination regresses against the baseline
            (e.g. {"baseline": "default", "tolerances": {"answer_hit": 0.1}}); the baseline
            "previous" compares each variant with itself in the deployment's previous completed run.
        resume: the id of an earlier batch to finish (matrix and cases are then not needed).
        batch_id: the new batch's id; empty = the last 12 hex digits of the flow run's id. An
            existing batch's id resumes it when the matrix, cases and repetitions are its own,
            and is refused otherwise (batches are never merged).
        repetitions: independent samples per (variant, case); identical node calls are shared
            only within one repetition; empty = the project's ExecutionConfig.repetitions.
        race: race the variants instead of running the full matrix: RaceConfig's fields, e.g.
            {"primary_metric": "answer_hit", "alpha": 0.05, "epsilon": 0.02}; cases run round by
            round and the variants already decided stop; empty = the project's ExecutionConfig.race.
        budget_usd: what this run may spend on model calls (US dollars); once reached no new node
            call starts and the batch ends budget_exceeded, to resume with a larger budget;
            empty = the project's ExecutionConfig.budget_usd.
    """
    gate = _gate_dict(regression_gate)
    parameters = {
        "project": project,
        "variant_matrix": variant_matrix,
        "test_cases": test_cases,
        "parallelism": parallelism,
        "regression_gate": gate,
        "batch_id": batch_id,
        "resume": resume,
        "repetitions": repetitions,
        "race": race,
        **({"budget_usd": budget_usd} if budget_usd is not None else {}),
    }
    plan = claim_plan(resume or batch_id, parameters)
    if plan is None:
        proj = resolve_project(project)
        if resume:
            plan = prepare_batch_resume(
                proj, resume, parallelism=parallelism, regression_gate=gate, budget_usd=budget_usd
            )
        else:
            matrix = load_data(variant_matrix, "variant_matrix")
            cases = load_data(test_cases, "test_cases") or []
            new_id = batch_id or batch_id_for_flow_run(current_flow_run.id)
            if cases and _resumes(proj, new_id, matrix, cases, repetitions):
                # the same batch again (a retried flow run, or its id given twice): finish it
                plan = prepare_batch_resume(
                    proj, new_id, parallelism=parallelism, regression_gate=gate, budget_usd=budget_usd
                )
            else:
                plan = prepare_batch(
                    proj,
                    matrix,
                    cases,
                    parallelism=parallelism,
                    batch_id=new_id,
                    regression_gate=gate,
                    repetitions=repetitions,
                    race=race,
                    budget_usd=budget_usd,
                )
    batch = execute_plan(plan)
    if plan.gate is not None:
        plan.gate.enforce(batch)
    return batch


@flow(name="wtb-run", flow_run_name=_run_name, task_runner=WTBRayTaskRunner(), persist_result=False, log_prints=True)
@_typed_errors_fail_the_run
def run_flow(
    project: ProjectRef,
    initial_state: dict[str, Any] | str,
    variant_config: dict[str, str] | None = None,
    execution_id: str | None = None,
    resume: bool = False,
) -> ExecutionResult:
    """Run one execution of a project with an optional variant choice.

    Args:
        project: a registered project name, 'package.module:attribute', a project YAML path,
            or 'wtb-project/<block name>'.
        initial_state: the graph's input state, or a JSON/YAML file path.
        variant_config: {node: variant, "_workflow": name}; empty = the defaults.
        execution_id: the LangGraph thread id to use; empty = a new one.
        resume: continue execution execution_id from its latest checkpoint instead.
    """
    parameters = {
        "project": project,
        "initial_state": initial_state,
        "variant_config": variant_config,
        "execution_id": execution_id,
        "resume": resume,
    }
    plan = claim_plan(execution_id, parameters)
    if plan is None:
        proj = resolve_project(project)
        if resume:
            record = open_index(get_settings().state_dir).get(execution_id or "")
            if record is None:
                raise UnknownExecutionError(f"no execution {execution_id!r} in the execution index")
            plan = prepare_resume(proj, record)
        else:
            plan = prepare_batch(
                proj,
                [variant_config or {}],
                [load_data(initial_state, "initial_state")],
                execution_ids=[execution_id] if execution_id else None,
            )
    return execute_plan(plan).results[0]
