"""Graphs of the dispatch benchmark (importable so Ray workers can load them)."""

from __future__ import annotations

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

LLM_SECONDS = 1.0


async def llm_a(state: Counter) -> dict:
    import asyncio

    await asyncio.sleep(LLM_SECONDS)
    return {"x": state["x"] + 1}


async def llm_b(state: Counter) -> dict:
    import asyncio

    await asyncio.sleep(LLM_SECONDS)
    return {"x": state["x"] + 2}


async def llm_c(state: Counter) -> dict:
    import asyncio

    await asyncio.sleep(LLM_SECONDS)
    return {"x": state["x"] + 3}


def three_llm_graph():
    """Three ``async def`` nodes of LLM_SECONDS each, in a chain."""
    graph = StateGraph(Counter)
    graph.add_node("a", llm_a)
    graph.add_node("b", llm_b)
    graph.add_node("c", llm_c)
    graph.add_edge(START, "a")
    graph.add_edge("a", "b")
    graph.add_edge("b", "c")
    graph.add_edge("c", END)
    return graph.compile()
