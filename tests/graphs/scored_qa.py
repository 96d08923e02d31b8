"""A small question-answering graph with retriever variants, node-reported
metrics and evaluators, for the MLflow, tracing and comparison tests.

Importable by module so Ray workers can load the node functions.
"""

from __future__ import annotations

import os

from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from wtb_prefect import log_node_metrics

FACTS = {
    "paris": "Paris is the capital of France.",
    "rome": "Rome is the capital of Italy.",
    "berlin": "Berlin is the capital of Germany.",
    "madrid": "Madrid is the capital of Spain.",
}

# 4 test cases: expected answers; case ids name the city.
CASES = [
    {"question": f"Which city is the capital of {country}?", "expected": city, "case_id": city}
    for city, country in [("paris", "France"), ("rome", "Italy"), ("berlin", "Germany"), ("madrid", "Spain")]
]


class QAState(TypedDict, total=False):
    question: str
    document: str
    answer: str
    worker_pid: int


def country_retriever(state: QAState) -> dict:
    """Finds the fact naming the question's country: always right."""
    words = {w.strip("?.").lower() for w in state["question"].split()}
    for fact in FACTS.values():
        if {w.strip(".").lower() for w in fact.split()} & words - {"is", "the", "capital", "of", "which", "city"}:
            log_node_metrics(tokens=len(fact.split()))
            return {"document": fact}
    return {"document": ""}


def first_retriever(state: QAState) -> dict:
    """Always the first fact: right for one case in four."""
    fact = next(iter(FACTS.values()))
    log_node_metrics(tokens=len(fact.split()))
    return {"document": fact}


def paris_rome_retriever(state: QAState) -> dict:
    """Right for France and Italy, wrong otherwise: right for two cases in four."""
    fact = FACTS["paris"] if "France" in state["question"] else FACTS["rome"]
    log_node_metrics(tokens=len(fact.split()))
    return {"document": fact}


def broken_retriever(state: QAState) -> dict:
    """Reports its tokens, then fails."""
    log_node_metrics(tokens=2)
    raise ValueError("retriever index is missing")


def answerer(state: QAState) -> dict:
    """The first word of the document, lower-cased; reports tokens and cost twice (they add up)."""
    answer = state["document"].split()[0].lower() if state.get("document") else ""
    log_node_metrics(tokens=1, cost=0.5)
    log_node_metrics(cost=0.25)
    return {"answer": answer, "worker_pid": os.getpid()}


def qa_graph():
    graph = StateGraph(QAState)
    graph.add_node("retriever", country_retriever)
    graph.add_node("answerer", answerer)
    graph.add_edge(START, "retriever")
    graph.add_edge("retriever", "answerer")
    graph.add_edge("answerer", END)
    return graph.compile()


def exact_match(final_state: dict, case: dict) -> float:
    """1.0 when the answer is the expected city."""
    return 1.0 if final_state.get("answer") == case.get("expected") else 0.0


def answer_stats(final_state: dict, case: dict) -> dict[str, float]:
    """A dict-valued evaluator: answer length and whether it is non-empty."""
    answer = final_state.get("answer", "")
    return {"length": float(len(answer)), "nonempty": float(bool(answer))}


def qa_project(name: str, executor: str = "ray"):
    """The QA project with the retriever variants and both evaluators registered."""
    from wtb_prefect import ExecutionConfig, NodeResourceConfig, RayConfig, WorkflowProject

    project = WorkflowProject(
        name=name,
        graph_factory=qa_graph,
        execution=ExecutionConfig(
            batch_executor=executor,
            default_node_resources=NodeResourceConfig(num_cpus=0.25, memory="64MB"),
            ray_config=RayConfig(max_retries=0),
        ),
    )
    project.register_variant("retriever", "first", first_retriever)
    project.register_variant("retriever", "paris_rome", paris_rome_retriever)
    project.register_variant("retriever", "broken", broken_retriever)
    project.register_evaluator("exact_match", exact_match)
    project.register_evaluator("answer", answer_stats)
    return project


MATRIX = [{}, {"retriever": "first"}, {"retriever": "paris_rome"}]
