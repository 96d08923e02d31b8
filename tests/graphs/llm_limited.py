"""Two plain ``def`` nodes that each call a real ``ChatOpenAI`` against the stand-in provider, for limit groups.

Nobody marks them: their lane is found from their first calls. Each node has
a variant (another prompt), so a batch over the matrix has several nodes and
variants calling one API. The client's own retries are off (``max_retries=0``):
a rate-limit answer reaches the node at once, as the limit group expects
(the provider's URL travels in the state, as Ray workers start before the
test's provider).
"""

from __future__ import annotations

from langchain_openai import ChatOpenAI
from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict


class Ask(TypedDict, total=False):
    base_url: str
    question: str
    draft: str
    review: str


def _llm(state: Ask) -> ChatOpenAI:
    return ChatOpenAI(base_url=state["base_url"], api_key="stand-in", model="gpt-4o-mini", max_retries=0, timeout=30)


def draft(state: Ask) -> dict:
    return {"draft": _llm(state).invoke(f"Draft an answer: {state['question']}").content}


def draft_terse(state: Ask) -> dict:
    return {"draft": _llm(state).invoke(f"Answer tersely: {state['question']}").content}


def review(state: Ask) -> dict:
    return {"review": _llm(state).invoke(f"Review: {state['draft']}").content}


def review_strict(state: Ask) -> dict:
    return {"review": _llm(state).invoke(f"Review strictly: {state['draft']}").content}


def ask_graph():
    graph = StateGraph(Ask)
    graph.add_node("draft", draft)
    graph.add_node("review", review)
    graph.add_edge(START, "draft")
    graph.add_edge("draft", "review")
    graph.add_edge("review", END)
    return graph.compile()
