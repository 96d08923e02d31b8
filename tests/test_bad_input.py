"""Bad input fails with a typed error naming the field and the fix, before any work."""

from __future__ import annotations

import pydantic
import pytest

from tests.graphs import langgraph_features
from wtb_prefect import ExecutionConfig, NodeResourceConfig, WorkflowProject
from wtb_prefect.config import parse_memory
from wtb_prefect.errors import (
    GraphFactoryError,
    ResourceUnsatisfiableError,
    StateValidationError,
    UnknownNodeError,
    UnknownVariantError,
    WTBError,
)


def _rag(name: str = "bad_rag", **execution) -> WorkflowProject:
    project = WorkflowProject(
        name=name,
        graph_factory=langgraph_features.rag_graph,
        state_schema=langgraph_features.RAGState,
        execution=ExecutionConfig(default_node_resources=NodeResourceConfig(num_cpus=0.25, memory="64MB"), **execution),
    )
    project.register_variant(node="retriever", name="prefix", implementation=langgraph_features.prefix_retriever)
    return project


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("512MB", 512_000_000),
        ("2GB", 2_000_000_000),
        ("1.5GiB", int(1.5 * 1024**3)),
        (1073741824, 1073741824),
        ("1073741824", 1073741824),
        ("64 MiB", 64 * 1024**2),
    ],
)
def test_memory_parses(text, expected):
    assert parse_memory(text) == expected
    assert NodeResourceConfig(memory=text).memory_bytes == expected


@pytest.mark.parametrize("text", ["lots", "2 parsecs", "-1GB", "", "GB"])
def test_memory_that_does_not_parse_names_the_field(text):
    with pytest.raises(pydantic.ValidationError) as info:
        NodeResourceConfig(memory=text)
    assert "memory" in str(info.value)
    assert "512MB" in str(info.value)  # says how to write it


def test_fractional_cpus_above_one_are_rejected():
    with pytest.raises(pydantic.ValidationError, match="num_cpus"):
        NodeResourceConfig(num_cpus=1.5)


def test_unknown_config_field_is_rejected():
    with pytest.raises(pydantic.ValidationError, match="num_cpu"):
        NodeResourceConfig(num_cpu=2)


def test_graph_factory_must_return_a_compiled_graph():
    with pytest.raises(GraphFactoryError, match=r"\.compile\(\)"):
        WorkflowProject(name="uncompiled", graph_factory=langgraph_features.uncompiled_graph)


def test_workflow_variant_factory_must_return_a_compiled_graph():
    project = _rag()
    with pytest.raises(GraphFactoryError, match="workflow variant 'broken'"):
        project.register_workflow_variant(name="broken", graph_factory=langgraph_features.uncompiled_graph)


def test_variant_for_a_node_the_graph_does_not_have():
    project = _rag()
    with pytest.raises(UnknownNodeError, match="reranker") as info:
        project.register_variant(node="reranker", name="x", implementation=langgraph_features.reranker)
    assert "Nodes:" in str(info.value) and "Fix:" in str(info.value)


def test_variant_for_a_node_of_a_workflow_variant_is_accepted():
    project = _rag()
    project.register_workflow_variant(name="with_reranker", graph_factory=langgraph_features.rag_with_reranker_graph)
    project.register_variant(node="reranker", name="identity", implementation=langgraph_features.reranker)
    assert project.list_variants("reranker") == {"reranker": ["identity"]}


def test_unknown_node_variant_in_run(bench):
    bench.register_project(_rag())
    with pytest.raises(UnknownVariantError, match="no variant 'bm42'"):
        bench.run(project="bad_rag", initial_state={"query": "q"}, variant_config={"retriever": "bm42"})


def test_unknown_node_in_variant_matrix(bench):
    bench.register_project(_rag())
    with pytest.raises(UnknownNodeError, match="'reranker'"):
        bench.run_batch_test(project="bad_rag", variant_matrix=[{}, {"reranker": "x"}], test_cases=[{"query": "q"}])


def test_unknown_workflow_variant(bench):
    bench.register_project(_rag())
    with pytest.raises(UnknownVariantError, match="no workflow variant 'v9'"):
        bench.run_batch_test(project="bad_rag", variant_matrix=[{"_workflow": "v9"}], test_cases=[{"query": "q"}])


@pytest.mark.parametrize(
    ("state", "match"),
    [({"query": 42}, "query"), ({"documents": []}, "query"), ({"query": "q", "colour": "red"}, "colour")],
)
def test_state_that_does_not_validate(bench, state, match):
    bench.register_project(_rag())
    with pytest.raises(StateValidationError, match=match):
        bench.run(project="bad_rag", initial_state=state)


def test_typeddict_state_with_a_wrong_type(bench):
    bench.register_project(WorkflowProject(name="bad_fan", graph_factory=langgraph_features.parallel_graph))
    with pytest.raises(StateValidationError, match="x"):
        bench.run(project="bad_fan", initial_state={"x": "three"})


def _flow_run_count(name_prefix: str) -> int:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(like_=name_prefix)))
    return len(runs)


@pytest.mark.parametrize(
    ("resources", "field"),
    [
        ({"num_gpus": 1}, "num_gpus"),
        ({"num_cpus": 64}, "num_cpus"),
        ({"memory": "4TB"}, "memory"),
        ({"custom_resources": {"tpu": 1}}, "custom_resources['tpu']"),
    ],
)
def test_unsatisfiable_resources_fail_before_any_work(bench, resources, field):
    if field == "num_gpus":  # one more than the cluster has, so the request fails on a GPU machine too
        resources = {"num_gpus": _cluster_gpus() + 1}
    project = _rag(name="bad_resources")
    project.execution.node_resources = {"generator": NodeResourceConfig(**resources)}
    bench.register_project(project)
    with pytest.raises(ResourceUnsatisfiableError) as info:
        bench.run_batch_test(project="bad_resources", variant_matrix=[{}], test_cases=[{"query": "q"}])
    message = str(info.value)
    assert "'generator'" in message and field in message and "Fix:" in message
    assert _flow_run_count("bad_resources") == 0, "no flow run may start"


def _cluster_gpus() -> int:
    import ray

    return int(ray.cluster_resources().get("GPU", 0))


def test_variant_resources_are_checked_too(bench):
    project = _rag(name="bad_variant_resources")
    project.register_variant(
        node="generator",
        name="gpu",
        implementation=langgraph_features.generator,
        resources=NodeResourceConfig(num_gpus=_cluster_gpus() + 1),
    )
    bench.register_project(project)
    with pytest.raises(ResourceUnsatisfiableError, match="variant generator=gpu"):
        bench.run_batch_test(
            project="bad_variant_resources", variant_matrix=[{}, {"generator": "gpu"}], test_cases=[{"query": "q"}]
        )


def test_every_error_is_a_wtb_error():
    for cls in (
        GraphFactoryError,
        ResourceUnsatisfiableError,
        StateValidationError,
        UnknownNodeError,
        UnknownVariantError,
    ):
        assert issubclass(cls, WTBError)
