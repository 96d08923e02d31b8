"""A three-node graph whose middle node runs on the isolated Ray node, and proves it.

``probe`` requests the custom resource only the isolated node offers (the
project sets that); it returns the IP of the Ray node it ran on and whether
it could see a file of the repository checkout (``state["checkout_file"]``).
The variant ``probe:bm25`` runs in its own uv environment with ``rank-bm25``,
a package the node's image lacks, and returns the version it imported.
Importable by module reference (the cluster's nodes get it through Ray's
``working_dir``).
"""

from __future__ import annotations

import os

from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict


class ProbeState(TypedDict, total=False):
    x: int
    checkout_file: str
    node_ip: str
    saw_checkout: bool
    bm25: str


def prep(state: ProbeState) -> dict:
    return {"x": state["x"] + 1}


def probe(state: ProbeState) -> dict:
    """Where this ran, and whether the checkout is visible there."""
    import ray

    return {
        "x": state["x"] * 10,
        "node_ip": ray.util.get_node_ip_address(),
        "saw_checkout": os.path.exists(state["checkout_file"]),
    }


def probe_bm25(state: ProbeState) -> dict:
    """``probe``, plus the version of ``rank_bm25`` this environment imports."""
    from importlib.metadata import version

    import rank_bm25  # noqa: F401  (only in the node's uv environment)

    return {**probe(state), "bm25": version("rank-bm25")}


def finish(state: ProbeState) -> dict:
    return {"x": state["x"] + 3}


def graph():
    builder = StateGraph(ProbeState)
    builder.add_node("prep", prep)
    builder.add_node("probe", probe)
    builder.add_node("finish", finish)
    builder.add_edge(START, "prep")
    builder.add_edge("prep", "probe")
    builder.add_edge("probe", "finish")
    builder.add_edge("finish", END)
    return builder.compile()
