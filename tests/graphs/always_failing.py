"""A graph whose node always raises, counting its attempts in a file (the body runs on Ray workers)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypedDict

from langgraph.graph import END, START, StateGraph


class CountState(TypedDict, total=False):
    attempts_file: str
    value: int


def always_fails(state: CountState) -> dict:
    with Path(state["attempts_file"]).open("a") as f:
        f.write(f"{os.getpid()}\n")
    raise RuntimeError("this node always fails")


def build_graph():
    graph = StateGraph(CountState)
    graph.add_node("flaky", always_fails)
    graph.add_edge(START, "flaky")
    graph.add_edge("flaky", END)
    return graph.compile()
