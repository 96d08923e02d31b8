"""Plain ``def`` nodes nobody marked: ones that wait (sleep like an API call) and ones that compute.

The waiting graph fans out with ``Send`` into a reducer, so a run whose calls
change lane mid-batch still has LangGraph's semantics to get right.
"""

from __future__ import annotations

import operator
import time
from typing import Annotated

from langgraph.graph import END, START, StateGraph
from langgraph.types import Send
from typing_extensions import TypedDict


class Fan(TypedDict, total=False):
    x: int
    seconds: float
    parts: Annotated[list[int], operator.add]
    total: int


class Part(TypedDict):
    x: int
    i: int
    seconds: float


def plan(state: Fan) -> dict:
    """Waits like an API call, then starts the fan-out."""
    time.sleep(state.get("seconds", 0.3))
    return {"x": state["x"] * 10}


def fan(state: Fan) -> list[Send]:
    return [Send("call", {"x": state["x"], "i": i, "seconds": state.get("seconds", 0.3)}) for i in range(3)]


def call(part: Part) -> dict:
    time.sleep(part["seconds"])
    return {"parts": [part["x"] + part["i"] ** 2]}


def gather(state: Fan) -> dict:
    time.sleep(state.get("seconds", 0.3))
    return {"total": sum(state["parts"]) + state["x"]}


def waiting_graph():
    graph = StateGraph(Fan)
    graph.add_node("plan", plan)
    graph.add_node("call", call)
    graph.add_node("gather", gather)
    graph.add_edge(START, "plan")
    graph.add_conditional_edges("plan", fan, ["call"])
    graph.add_edge("call", "gather")
    graph.add_edge("gather", END)
    return graph.compile()


class Work(TypedDict, total=False):
    x: int
    seconds: float
    y: int


def crunch(state: Work) -> dict:
    """Burns CPU for ``seconds`` (no waiting), then answers from the input."""
    end = time.process_time() + state.get("seconds", 0.3)
    n = 0
    while time.process_time() < end:
        n += sum(i * i for i in range(1000))
    return {"y": state["x"] * 3 + (1 if n > 0 else 0)}


def computing_graph():
    graph = StateGraph(Work)
    graph.add_node("crunch", crunch)
    graph.add_edge(START, "crunch")
    graph.add_edge("crunch", END)
    return graph.compile()
