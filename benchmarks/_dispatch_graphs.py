"""Graphs of the dispatch benchmark (importable so Ray workers can load them)."""

from __future__ import annotations

import asyncio
import time

from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict


class Counter(TypedDict, total=False):
    x: int
    trace: list[int]


def add_one(state: Counter) -> dict:
    """A node with negligible work: dispatch cost dominates."""
    return {"x": state["x"] + 1}


def double(state: Counter) -> dict:
    return {"x": state["x"] * 2}


def two_node_graph():
    graph = StateGraph(Counter)
    graph.add_node("add_one", add_one)
    graph.add_node("double", double)
    graph.add_edge(START, "add_one")
    graph.add_edge("add_one", "double")
    graph.add_edge("double", END)
    return graph.compile()


NODE_SECONDS = 0.1


def io_a(state: Counter) -> dict:
    time.sleep(NODE_SECONDS)  # an I/O-bound node: waiting, not computing
    return {"x": state["x"] + 1}


def io_b(state: Counter) -> dict:
    time.sleep(NODE_SECONDS)
    return {"x": state["x"] + 2}


def io_c(state: Counter) -> dict:
    time.sleep(NODE_SECONDS)
    return {"x": state["x"] + 3}


def three_io_graph():
    graph = StateGraph(Counter)
    graph.add_node("a", io_a)
    graph.add_node("b", io_b)
    graph.add_node("c", io_c)
    graph.add_edge(START, "a")
    graph.add_edge("a", "b")
    graph.add_edge("b", "c")
    graph.add_edge("c", END)
    return graph.compile()


# --- LLM-shaped nodes: they wait (an API call), they do not compute -----------------------
# The wait is the state's ``s`` (seconds), so one module serves every row.


class Call(TypedDict, total=False):
    x: int
    s: float


async def llm_a(state: Call) -> dict:
    await asyncio.sleep(state["s"])
    return {"x": state["x"] + 1}


async def llm_b(state: Call) -> dict:
    await asyncio.sleep(state["s"])
    return {"x": state["x"] + 2}


async def llm_c(state: Call) -> dict:
    await asyncio.sleep(state["s"])
    return {"x": state["x"] + 3}


def wait_a(state: Call) -> dict:
    """The sync twin of :func:`llm_a` (for bare Ray tasks: one process per call in flight)."""
    time.sleep(state["s"])
    return {"x": state["x"] + 1}


def wait_b(state: Call) -> dict:
    time.sleep(state["s"])
    return {"x": state["x"] + 2}


def wait_c(state: Call) -> dict:
    time.sleep(state["s"])
    return {"x": state["x"] + 3}


def three_llm_graph():
    """Three ``async def`` nodes that each wait ``state["s"]`` seconds, in a chain."""
    graph = StateGraph(Call)
    graph.add_node("a", llm_a)
    graph.add_node("b", llm_b)
    graph.add_node("c", llm_c)
    graph.add_edge(START, "a")
    graph.add_edge("a", "b")
    graph.add_edge("b", "c")
    graph.add_edge("c", END)
    return graph.compile()
