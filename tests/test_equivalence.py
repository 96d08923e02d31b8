"""A run through WTB ends in exactly the state ``graph.invoke`` gives."""

from __future__ import annotations

import asyncio

import pytest
from langchain_core.messages import HumanMessage

from tests.graphs import langgraph_features
from wtb_prefect import ExecutionConfig, NodeResourceConfig, RayConfig, WorkflowProject

CASES = [
    ("linear_pydantic", langgraph_features.rag_graph, {"query": "What is LangGraph?"}, None),
    ("parallel_reducer", langgraph_features.parallel_graph, {"x": 3, "results": []}, None),
    ("conditional_even", langgraph_features.conditional_graph, {"n": 12, "path": []}, None),
    ("conditional_odd", langgraph_features.conditional_graph, {"n": 7, "path": []}, None),
    ("cycle", langgraph_features.cycle_graph, {"count": 0, "log": []}, None),
    ("send_fanout", langgraph_features.send_graph, {"items": [1, 2, 3, 4], "squares": []}, None),
    ("command_big", langgraph_features.command_graph, {"value": 42, "trail": []}, None),
    ("command_small", langgraph_features.command_graph, {"value": 1, "trail": []}, None),
    ("dataclass_state", langgraph_features.dataclass_graph, {"name": "ab c1"}, None),
    ("messages_config", langgraph_features.messages_graph, {"messages": [HumanMessage(content="hi", id="h1")]}, None),
    ("subgraph_node", langgraph_features.subgraph_graph, {"text": "  many   spaced words  "}, None),
]


def _project(name: str, factory, executor: str = "ray") -> WorkflowProject:
    return WorkflowProject(
        name=name,
        graph_factory=factory,
        execution=ExecutionConfig(
            batch_executor=executor,
            default_node_resources=NodeResourceConfig(num_cpus=0.25, memory="64MB"),
            ray_config=RayConfig(max_retries=0),
        ),
    )


@pytest.mark.parametrize(("name", "factory", "state", "_"), CASES, ids=[c[0] for c in CASES])
def test_run_matches_graph_invoke(bench, name, factory, state, _):
    expected = factory().invoke(state)
    bench.register_project(_project(f"eq_{name}", factory))
    result = bench.run(project=f"eq_{name}", initial_state=state)
    assert result.status == "completed", result.error
    assert result.final_state == expected
    dispatched = {record.node for record in result.nodes}
    assert dispatched, "no node ran as a task"
    assert all(record.task_run_id for record in result.nodes), "every node must be a Prefect task run"


def test_batch_matches_graph_invoke_per_case(bench):
    """A batch over several cases gives each case the state graph.invoke gives it."""
    cases = [{"n": n, "path": []} for n in (1, 2, 3, 10)]
    bench.register_project(_project("eq_batch", langgraph_features.conditional_graph))
    batch = bench.run_batch_test(project="eq_batch", variant_matrix=[{}], test_cases=cases, parallelism=4)
    graph = langgraph_features.conditional_graph()
    assert len(batch) == 4
    for index, case in enumerate(cases):
        result = batch.get("default", str(index))
        assert result.final_state == graph.invoke(case)


@pytest.mark.parametrize("executor", ["threadpool", "sequential"])
def test_other_executors_match_graph_invoke(bench, executor):
    state = {"items": [3, 5], "squares": []}
    bench.register_project(_project(f"eq_{executor}", langgraph_features.send_graph, executor))
    result = bench.run(project=f"eq_{executor}", initial_state=state)
    assert result.status == "completed", result.error
    assert result.final_state == langgraph_features.send_graph().invoke(state)
    assert [r.node for r in result.nodes].count("square") == 2


def _lane_project(name: str, factory, *, io_bound: bool) -> WorkflowProject:
    return WorkflowProject(
        name=name,
        graph_factory=factory,
        execution=ExecutionConfig(
            default_node_resources=NodeResourceConfig(num_cpus=0.25, memory="64MB", io_bound=io_bound),
            ray_config=RayConfig(max_retries=0),
        ),
    )


@pytest.mark.parametrize(("name", "factory", "state", "_"), CASES, ids=[c[0] for c in CASES])
def test_io_lane_run_matches_graph_invoke(bench, name, factory, state, _):
    """Sync nodes marked io_bound run on an I/O lane's threaded actors, with LangGraph's semantics."""
    expected = factory().invoke(state)
    bench.register_project(_lane_project(f"eq_io_{name}", factory, io_bound=True))
    result = bench.run(project=f"eq_io_{name}", initial_state=state)
    assert result.status == "completed", result.error
    assert result.final_state == expected
    assert all(record.task_run_id and record.run_s is not None for record in result.nodes)


ASYNC_CASES = [
    ("async_parallel_reducer", langgraph_features.async_parallel_graph, {"x": 3, "results": []}),
    ("async_send_fanout", langgraph_features.async_send_graph, {"items": [1, 2, 3, 4], "squares": []}),
    ("async_command_big", langgraph_features.async_command_graph, {"value": 42, "trail": []}),
    ("async_command_small", langgraph_features.async_command_graph, {"value": 1, "trail": []}),
    (
        "async_messages_config",
        langgraph_features.async_messages_graph,
        {"messages": [HumanMessage(content="hi", id="h1")]},
    ),
]


@pytest.mark.parametrize(("name", "factory", "state"), ASYNC_CASES, ids=[c[0] for c in ASYNC_CASES])
def test_async_nodes_match_graph_ainvoke(bench, name, factory, state):
    """``async def`` nodes run on an I/O lane's async actors and end where ``graph.ainvoke`` ends."""
    expected = asyncio.run(factory().ainvoke(state))
    bench.register_project(_lane_project(f"eq_{name}", factory, io_bound=False))
    result = bench.run(project=f"eq_{name}", initial_state=state)
    assert result.status == "completed", result.error
    assert result.final_state == expected
    assert all(record.task_run_id and record.run_s is not None for record in result.nodes)
