"""Retries: Prefect alone retries a failed node, so it runs exactly max_retries + 1 times."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.graphs.always_failing import CountState, build_graph
from wtb_prefect import ExecutionConfig, RayConfig, WorkflowProject

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("max_retries", [0, 2])
def test_a_node_that_always_raises_runs_max_retries_plus_one_times(bench, tmp_path: Path, max_retries: int) -> None:
    project = WorkflowProject(
        name=f"always_fails_{max_retries}",
        graph_factory=build_graph,
        state_schema=CountState,
        execution=ExecutionConfig(ray_config=RayConfig(max_retries=max_retries, retry_delay=0)),
    )
    bench.register_project(project)
    attempts = tmp_path / "attempts.txt"
    result = bench.run(project.name, {"attempts_file": str(attempts), "value": 1})
    assert result.status == "failed"
    assert result.error.node == "flaky" and "always fails" in result.error.message
    assert len(attempts.read_text().splitlines()) == max_retries + 1
