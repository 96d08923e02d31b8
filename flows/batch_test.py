"""The deployable batch-test flow ``wtb-batch-test``.

Entrypoint ``flows/batch_test.py:batch_test``. Its parameters are validated by
pydantic, so the Prefect UI shows a form and a bad value fails before any work
starts. The project is named by reference (``package.module:attribute``, a YAML
path or ``wtb-project/<block>``); the matrix and the cases are given inline, as
a JSON/YAML file path or as ``package.module:attribute``.

    prefect deployment run 'wtb-batch-test/quickstart-on-demand' \
        --param test_cases='[{"query": "What schedules tasks?", "expected": "ray"}]'
"""

from __future__ import annotations

from typing import Annotated, Any

from prefect import flow
from pydantic import BaseModel, ConfigDict, Field

from wtb_prefect.engine import batch_test_flow
from wtb_prefect.registry import load_data, resolve_project
from wtb_prefect.results import BatchTestResult
from wtb_prefect.task_runner import WTBRayTaskRunner

ProjectRef = Annotated[str, Field(min_length=1)]
Matrix = list[dict[str, str]] | str | None
Cases = list[dict[str, Any]] | str


class RegressionGate(BaseModel):
    """Fail the flow run when a combination is worse than the baseline beyond a tolerance."""

    model_config = ConfigDict(extra="forbid")

    baseline: str | None = Field(default=None, description="Variant label; empty = the matrix's first combination.")
    tolerances: dict[str, float | str] = Field(
        min_length=1, description="Metric -> allowed worsening: 0.05 (absolute) or '5%' (relative)."
    )


@flow(name="wtb-batch-test", task_runner=WTBRayTaskRunner(), persist_result=False, log_prints=True)
def batch_test(
    project: ProjectRef,
    test_cases: Cases | None = None,
    variant_matrix: Matrix = None,
    parallelism: Annotated[int | None, Field(ge=1)] = None,
    regression_gate: RegressionGate | None = None,
    resume: str | None = None,
) -> BatchTestResult:
    """Run every variant combination on every test case; nodes are task runs on Ray.

    Args:
        project: 'package.module:attribute' (a WorkflowProject or a function returning one),
            a project YAML path, or 'wtb-project/<block name>'.
        test_cases: initial states (each may add 'expected' and 'case_id'); or a JSON/YAML
            file path, or 'package.module:attribute'.
        variant_matrix: variant combinations such as {"retriever": "bm25", "_workflow": "with_reranker"};
            empty = the defaults only; or a JSON/YAML file path, or 'package.module:attribute'.
        parallelism: executions at once; empty = the project's max_concurrent_workflows.
        regression_gate: fail the run when a combination regresses against the baseline
            (e.g. {"baseline": "default", "tolerances": {"answer_hit": 0.1}}).
        resume: the id of an earlier batch to finish (matrix and cases are then not needed).
    """
    # The engine's flow body runs inside this flow run: same plan, observers and artifacts.
    return batch_test_flow.fn(
        project=resolve_project(project),
        variant_matrix=load_data(variant_matrix, "variant_matrix"),
        test_cases=load_data(test_cases, "test_cases"),
        parallelism=parallelism,
        resume=resume,
        regression_gate=regression_gate.model_dump() if regression_gate else None,
    )


if __name__ == "__main__":
    batch_test.serve(name="wtb-batch-test-served")
