"""A small retrieval QA workflow with node and workflow variants.

``build_project()`` returns the ``WorkflowProject``; ``TEST_CASES`` and
``VARIANT_MATRIX`` are what ``wtb demo`` runs.
"""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph
from pydantic import BaseModel

from wtb_prefect import ExecutionConfig, NodeResourceConfig, RayConfig, WorkflowProject

CORPUS = {
    "langgraph": "LangGraph builds stateful, multi-actor applications with LLMs as graphs of nodes.",
    "prefect": "Prefect orchestrates Python workflows as flows made of tasks, with retries and a UI.",
    "ray": "Ray schedules Python tasks across a cluster, each with its CPUs, GPUs and memory.",
    "mlflow": "MLflow tracks experiments: parameters, metrics and artifacts of every run.",
    "dvc": "DVC versions data files next to code, with snapshots you can restore.",
    "uv": "uv installs Python packages and builds virtual environments very fast.",
}


class QAState(BaseModel):
    """The state of the QA graph."""

    query: str
    documents: list[str] = []
    answer: str = ""


def _words(text: str) -> set[str]:
    return {w.strip("?.,!:").lower() for w in text.split() if len(w) > 2}


def overlap_retriever(state: QAState) -> dict:
    """Rank documents by the number of words they share with the query."""
    query = _words(state.query)
    ranked = sorted(CORPUS.values(), key=lambda doc: (-len(query & _words(doc)), doc))
    return {"documents": ranked[:2]}


def name_retriever(state: QAState) -> dict:
    """Return the documents whose tool name appears in the query."""
    query = _words(state.query)
    return {"documents": [doc for name, doc in CORPUS.items() if name in query][:2]}


def length_reranker(state: QAState) -> dict:
    """Put the document sharing most query words per word first."""
    query = _words(state.query)
    return {"documents": sorted(state.documents, key=lambda d: -len(query & _words(d)) / len(_words(d)))}


def generator(state: QAState) -> dict:
    """Answer with the first retrieved document."""
    return {"answer": state.documents[0] if state.documents else "I don't know."}


def qa_graph():
    """retriever -> generator."""
    graph = StateGraph(QAState)
    graph.add_node("retriever", overlap_retriever)
    graph.add_node("generator", generator)
    graph.add_edge(START, "retriever")
    graph.add_edge("retriever", "generator")
    graph.add_edge("generator", END)
    return graph.compile()


def qa_with_reranker_graph():
    """retriever -> reranker -> generator."""
    graph = StateGraph(QAState)
    graph.add_node("retriever", overlap_retriever)
    graph.add_node("reranker", length_reranker)
    graph.add_node("generator", generator)
    graph.add_edge(START, "retriever")
    graph.add_edge("retriever", "reranker")
    graph.add_edge("reranker", "generator")
    graph.add_edge("generator", END)
    return graph.compile()


def answer_hit(final_state: dict, case: dict) -> float:
    """1.0 when the answer is the expected document."""
    return float(final_state["answer"] == CORPUS[case["expected"]])


def build_project() -> WorkflowProject:
    """The quick-start project with its variants and evaluator."""
    project = WorkflowProject(
        name="quickstart_qa",
        description="Retrieval QA over a six-document corpus",
        graph_factory=qa_graph,
        state_schema=QAState,
        execution=ExecutionConfig(
            ray_config=RayConfig(max_concurrent_workflows=8, max_retries=1),
            default_node_resources=NodeResourceConfig(num_cpus=0.25, memory="128MB"),
        ),
    )
    project.register_variant(node="retriever", name="name_match", implementation=name_retriever)
    project.register_workflow_variant(name="with_reranker", graph_factory=qa_with_reranker_graph)
    project.register_evaluator("answer_hit", answer_hit)
    return project


VARIANT_MATRIX = [
    {},
    {"retriever": "name_match"},
    {"_workflow": "with_reranker"},
    {"_workflow": "with_reranker", "retriever": "name_match"},
]

TEST_CASES = [
    {"query": "How does Ray schedule tasks with CPUs and GPUs?", "expected": "ray"},
    {"query": "Which tool tracks experiment metrics and parameters?", "expected": "mlflow"},
    {"query": "What builds multi-actor LLM applications as graphs?", "expected": "langgraph"},
    {"query": "How do I version data files with snapshots?", "expected": "dvc"},
    {"query": "What orchestrates flows made of tasks with retries?", "expected": "prefect"},
    {"query": "Which installer builds virtual environments fast?", "expected": "uv"},
]
