"""The specification's section 3.1 example runs as written, with real functions.

As written it asks for a GPU (generator) and 4 CPUs (reranker); on a machine
without them that must be a clear error before any work. Scaled to this
machine's resources, the single run and the 4 x 3 batch give every variant
combination exactly the state LangGraph gives the same functions.
"""

from __future__ import annotations

import platform

import pytest
from langgraph.graph import END, START, StateGraph

from tests.graphs import spec_example as ex
from wtb_prefect import (
    EnvironmentConfig,
    EnvSpec,
    ExecutionConfig,
    NodeResourceConfig,
    RayConfig,
    WorkflowProject,
    WTBTestBench,
)
from wtb_prefect.errors import ResourceUnsatisfiableError

PYTHON = ".".join(platform.python_version_tuple()[:2])

VARIANT_MATRIX = [
    {"retriever": "default", "generator": "default"},
    {"retriever": "bm25_retriever", "generator": "default"},
    {"retriever": "hybrid_retriever", "generator": "gpt4_generator"},
    {"_workflow": "rag_with_reranker", "generator": "default"},
]
TEST_CASES = [
    {"query": "What is LangGraph?"},
    {"query": "How does RAG work?"},
    {"query": "Explain vector search"},
]


def build_project(node_resources: dict[str, NodeResourceConfig]) -> WorkflowProject:
    project = WorkflowProject(
        name="rag_pipeline",
        description="RAG Pipeline for Q&A",
        graph_factory=ex.create_rag_graph,
        state_schema=ex.RAGState,
        environment=EnvironmentConfig(
            granularity="node",
            default_env=EnvSpec(python_version=PYTHON, dependencies=[]),
            node_environments={"retriever": EnvSpec(dependencies=["rank-bm25>=0.2"])},
            variant_environments={"retriever:bm25_retriever": EnvSpec(dependencies=["rank-bm25>=0.2"])},
        ),
        execution=ExecutionConfig(
            batch_executor="ray",
            ray_config=RayConfig(address="auto", max_concurrent_workflows=10, object_store_memory=2 * 1024**3),
            node_resources=node_resources,
            default_node_resources=NodeResourceConfig(num_cpus=1, num_gpus=0, memory="1GB"),
        ),
    )
    project.register_variant(
        node="retriever",
        name="bm25_retriever",
        implementation=ex.bm25_retriever_func,
        description="BM25-based sparse retriever",
    )
    project.register_variant(
        node="retriever",
        name="hybrid_retriever",
        implementation=ex.hybrid_retriever_func,
        description="Hybrid dense + sparse retriever",
    )
    project.register_variant(
        node="generator",
        name="gpt4_generator",
        implementation=ex.gpt4_generator_func,
        description="GPT-4 based generator",
    )
    project.register_workflow_variant(
        name="rag_with_reranker",
        graph_factory=ex.create_rag_with_reranker,
        description="RAG pipeline with reranker for better relevance",
    )
    return project


AS_WRITTEN = {
    "retriever": NodeResourceConfig(num_cpus=2, num_gpus=0, memory="2GB"),
    "generator": NodeResourceConfig(num_cpus=1, num_gpus=1, memory="8GB"),
    "reranker": NodeResourceConfig(num_cpus=4, num_gpus=0, memory="4GB"),
}
THIS_MACHINE = {  # the same shape, within 2 CPUs and no GPU
    "retriever": NodeResourceConfig(num_cpus=1, num_gpus=0, memory="512MB"),
    "generator": NodeResourceConfig(num_cpus=0.5, num_gpus=0, memory="256MB"),
    "reranker": NodeResourceConfig(num_cpus=2, num_gpus=0, memory="512MB"),
}


def _expected(retriever, generator, reranker=None):
    """The same functions wired by plain LangGraph, independent of WTB."""
    graph = StateGraph(ex.RAGState)
    graph.add_node("retriever", retriever)
    graph.add_node("generator", generator)
    graph.add_edge(START, "retriever")
    if reranker:
        graph.add_node("reranker", reranker)
        graph.add_edge("retriever", "reranker")
        graph.add_edge("reranker", "generator")
    else:
        graph.add_edge("retriever", "generator")
    graph.add_edge("generator", END)
    return graph.compile()


EXPECTED_GRAPHS = {
    "default": _expected(ex.retriever, ex.generator),
    "retriever=bm25_retriever": _expected(ex.bm25_retriever_func, ex.generator),
    "generator=gpt4_generator,retriever=hybrid_retriever": _expected(ex.hybrid_retriever_func, ex.gpt4_generator_func),
    "_workflow=rag_with_reranker": _expected(ex.retriever, ex.generator, ex.reranker_func),
}


@pytest.mark.no_gpu  # as written it asks for one GPU: satisfiable on a machine that has one
def test_as_written_needs_a_gpu_and_says_so(bench: WTBTestBench):
    bench.register_project(build_project(AS_WRITTEN))
    with pytest.raises(ResourceUnsatisfiableError, match="num_gpus=1"):
        bench.run_batch_test(project="rag_pipeline", variant_matrix=VARIANT_MATRIX, test_cases=TEST_CASES)


@pytest.mark.network  # its bm25 retriever's environment is built from the package index
def test_spec_example_runs_with_every_result_correct(bench: WTBTestBench):
    wtb = bench
    wtb.register_project(build_project(THIS_MACHINE))

    result = wtb.run(project="rag_pipeline", initial_state={"query": "What is LangGraph?"})
    assert result.status == "completed", result.error
    assert result.final_state == EXPECTED_GRAPHS["default"].invoke({"query": "What is LangGraph?"})

    batch_result = wtb.run_batch_test(project="rag_pipeline", variant_matrix=VARIANT_MATRIX, test_cases=TEST_CASES)
    assert len(batch_result) == 12
    assert not batch_result.failed, [str(r.error) for r in batch_result.failed]
    labels = [label for label in batch_result.by_variant()]
    assert labels == list(EXPECTED_GRAPHS)
    for result in batch_result:
        case = TEST_CASES[int(result.case_id)]
        assert result.final_state == EXPECTED_GRAPHS[result.variant_label].invoke(case), result.variant_label
    # the variants really differ from the default
    answers = {label: [r.final_state["answer"] for r in group] for label, group in batch_result.by_variant().items()}
    assert answers["generator=gpt4_generator,retriever=hybrid_retriever"] != answers["default"]
    # resources and environments resolved variant > node > default
    bm25 = batch_result.get("retriever=bm25_retriever", "0")
    retriever_record = next(r for r in bm25.nodes if r.node == "retriever")
    assert retriever_record.resources["num_cpus"] == 1
    reranked = batch_result.get("_workflow=rag_with_reranker", "0")
    assert next(r for r in reranked.nodes if r.node == "reranker").resources["num_cpus"] == 2
