"""The deployable single-execution flow ``wtb-run`` (entrypoint ``flows/single_run.py:single_run``)."""

from __future__ import annotations

from typing import Annotated, Any

from prefect import flow
from pydantic import Field

from wtb_prefect.engine import run_flow
from wtb_prefect.registry import load_data, resolve_project
from wtb_prefect.results import ExecutionResult
from wtb_prefect.task_runner import WTBRayTaskRunner


@flow(name="wtb-run", task_runner=WTBRayTaskRunner(), persist_result=False, log_prints=True)
def single_run(
    project: Annotated[str, Field(min_length=1)],
    initial_state: dict[str, Any] | str,
    variant_config: dict[str, str] | None = None,
    execution_id: str | None = None,
    resume: bool = False,
) -> ExecutionResult:
    """Run one execution of a project with an optional variant choice.

    Args:
        project: 'package.module:attribute', a project YAML path, or 'wtb-project/<block name>'.
        initial_state: the graph's input state, or a JSON/YAML file path.
        variant_config: {node: variant, "_workflow": name}; empty = the defaults.
        execution_id: the LangGraph thread id to use; empty = a new one.
        resume: continue execution execution_id from its latest checkpoint instead.
    """
    # The engine's flow body runs inside this flow run.
    return run_flow.fn(
        project=resolve_project(project),
        initial_state=load_data(initial_state, "initial_state"),
        variant_config=variant_config,
        execution_id=execution_id,
        resume=resume,
    )
