"""What a variant costs, with a real ``ChatOpenAI`` client and no code for cost in the nodes.

The graph drafts an answer with one model and reviews it with another. The
``review`` node has a variant on a larger model; both variants share the
``draft`` calls (node-call sharing), and the bench books what that saved.

No LLM API is reached: ``run_example()`` starts the STAND-IN provider of
:mod:`wtb_prefect.testing` on 127.0.0.1 (an OpenAI-compatible server with
deterministic answers and OpenAI-shaped token usage) and points the real
client at it through the state's ``base_url``. With a real provider, leave
``base_url`` out and set ``OPENAI_API_KEY``.

Run it: ``python -m examples.llm_cost.project``
"""

from __future__ import annotations

from typing import Any

from langchain_openai import ChatOpenAI
from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from wtb_prefect import ExecutionConfig, NodeResourceConfig, WorkflowProject

QUESTIONS = [
    "What does node-call sharing save?",
    "Why compare variants case by case?",
    "When should a batch stop spending?",
    "What is a checkpoint for?",
]


class Review(TypedDict, total=False):
    base_url: str
    question: str
    draft: str
    verdict: str


def _llm(state: Review, model: str) -> ChatOpenAI:
    extra = {"base_url": state["base_url"], "api_key": "stand-in"} if state.get("base_url") else {}
    return ChatOpenAI(model=model, stream_usage=True, **extra)


def draft(state: Review) -> dict[str, Any]:
    """Draft an answer with a small model."""
    return {"draft": _llm(state, "gpt-4o-mini").invoke(f"Answer briefly: {state['question']}").content}


def review(state: Review) -> dict[str, Any]:
    """Review the draft with a small model."""
    return {"verdict": _llm(state, "gpt-4.1-nano").invoke(f"Review: {state['draft']}").content}


def review_large(state: Review) -> dict[str, Any]:
    """Review the draft with a larger model (the variant whose cost is in question)."""
    return {"verdict": _llm(state, "gpt-4.1").invoke(f"Review carefully: {state['draft']}").content}


def graph() -> Any:
    """draft -> review."""
    builder = StateGraph(Review)
    builder.add_node("draft", draft)
    builder.add_node("review", review)
    builder.add_edge(START, "draft")
    builder.add_edge("draft", "review")
    builder.add_edge("review", END)
    return builder.compile()


def build_project(name: str = "llm_cost") -> WorkflowProject:
    """The project: ``review`` has the variant ``large``; prices are the shipped list prices."""
    project = WorkflowProject(
        name=name,
        graph_factory=graph,
        state_schema=Review,
        execution=ExecutionConfig(
            default_node_resources=NodeResourceConfig(num_cpus=0.05, memory="64MB", io_bound=True),
            checkpoint_storage="memory",
        ),
    )
    project.register_variant(node="review", name="large", implementation=review_large)
    return project


def run_example(bench: Any = None, name: str = "llm_cost") -> dict[str, Any]:
    """Run the two variants on the stand-in provider; returns the batch, its cost and an estimate."""
    from wtb_prefect import WTBTestBench
    from wtb_prefect.testing import StandInProvider

    bench = bench or WTBTestBench()
    project = build_project(name)
    bench.register_project(project)
    matrix = [{}, {"review": "large"}]
    with StandInProvider(latency_s=0.05) as provider:
        cases = [{"base_url": provider.base_url, "question": q} for q in QUESTIONS]
        batch = bench.run_batch_test(project.name, matrix, cases)
        more = [{"base_url": provider.base_url, "question": f"{q} (again)"} for q in QUESTIONS]
        estimate = bench.estimate_batch(project.name, matrix, cases + more)
        served = provider.usage_by_model()
    return {"batch": batch, "cost": batch.cost(), "estimate": estimate, "provider_usage": served}


if __name__ == "__main__":
    outcome = run_example()
    print(outcome["batch"].summary())
    print(outcome["cost"])
    print(outcome["estimate"])
