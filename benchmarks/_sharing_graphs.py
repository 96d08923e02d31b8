"""Graphs of the node-call sharing benchmark (importable so Ray workers can load them).

A 3-node graph of 1 s I/O nodes (an LLM call's shape): ``fetch -> draft -> polish``;
``polish`` has ten implementations, so ten variants differ only at the last node.
"""

from __future__ import annotations

import time

from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

NODE_SECONDS = 1.0


class Doc(TypedDict, total=False):
    x: int
    fetched: int
    draft: int
    final: int


def fetch(state: Doc) -> dict:
    time.sleep(NODE_SECONDS)
    return {"fetched": state["x"] * 10}


def draft(state: Doc) -> dict:
    time.sleep(NODE_SECONDS)
    return {"draft": state["fetched"] + 1}


def polish_0(state: Doc) -> dict:
    time.sleep(NODE_SECONDS)
    return {"final": state["draft"] * 100 + 0}


def polish_1(state: Doc) -> dict:
    time.sleep(NODE_SECONDS)
    return {"final": state["draft"] * 100 + 1}


def polish_2(state: Doc) -> dict:
    time.sleep(NODE_SECONDS)
    return {"final": state["draft"] * 100 + 2}


def polish_3(state: Doc) -> dict:
    time.sleep(NODE_SECONDS)
    return {"final": state["draft"] * 100 + 3}


def polish_4(state: Doc) -> dict:
    time.sleep(NODE_SECONDS)
    return {"final": state["draft"] * 100 + 4}


def polish_5(state: Doc) -> dict:
    time.sleep(NODE_SECONDS)
    return {"final": state["draft"] * 100 + 5}


def polish_6(state: Doc) -> dict:
    time.sleep(NODE_SECONDS)
    return {"final": state["draft"] * 100 + 6}


def polish_7(state: Doc) -> dict:
    time.sleep(NODE_SECONDS)
    return {"final": state["draft"] * 100 + 7}


def polish_8(state: Doc) -> dict:
    time.sleep(NODE_SECONDS)
    return {"final": state["draft"] * 100 + 8}


def polish_9(state: Doc) -> dict:
    time.sleep(NODE_SECONDS)
    return {"final": state["draft"] * 100 + 9}


POLISHERS = [polish_0, polish_1, polish_2, polish_3, polish_4, polish_5, polish_6, polish_7, polish_8, polish_9]


def three_io_graph():
    """fetch -> draft -> polish (polish_0 by default)."""
    graph = StateGraph(Doc)
    graph.add_node("fetch", fetch)
    graph.add_node("draft", draft)
    graph.add_node("polish", polish_0)
    graph.add_edge(START, "fetch")
    graph.add_edge("fetch", "draft")
    graph.add_edge("draft", "polish")
    graph.add_edge("polish", END)
    return graph.compile()
