"""Graphs of the automatic-lanes benchmark: plain ``def`` nodes nobody marked, that wait or that compute."""

from __future__ import annotations

import time

from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict


class Call(TypedDict, total=False):
    x: int
    s: float


def wait_a(state: Call) -> dict:
    """A plain def node that waits ``s`` seconds, as a sync LLM client call does."""
    time.sleep(state["s"])
    return {"x": state["x"] + 1}


def wait_b(state: Call) -> dict:
    time.sleep(state["s"])
    return {"x": state["x"] + 2}


def wait_c(state: Call) -> dict:
    time.sleep(state["s"])
    return {"x": state["x"] + 3}


def _burn(seconds: float) -> int:
    end = time.process_time() + seconds
    n = 0
    while time.process_time() < end:
        n += sum(i * i for i in range(1000)) & 1
    return n


def burn_a(state: Call) -> dict:
    """A plain def node that computes for ``s`` seconds of CPU."""
    _burn(state["s"])
    return {"x": state["x"] + 1}


def burn_b(state: Call) -> dict:
    _burn(state["s"])
    return {"x": state["x"] + 2}


def burn_c(state: Call) -> dict:
    _burn(state["s"])
    return {"x": state["x"] + 3}


def _chain(a, b, c):
    graph = StateGraph(Call)
    graph.add_node("a", a)
    graph.add_node("b", b)
    graph.add_node("c", c)
    graph.add_edge(START, "a")
    graph.add_edge("a", "b")
    graph.add_edge("b", "c")
    graph.add_edge("c", END)
    return graph.compile()


def three_wait_graph():
    return _chain(wait_a, wait_b, wait_c)


def three_burn_graph():
    return _chain(burn_a, burn_b, burn_c)
