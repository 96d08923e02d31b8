"""A graph whose ``work`` node records the Ray node it runs on, for the multi-node Ray test.

``work`` appends ``start <ray node id>`` and ``end <ray node id>`` to
``<marker_dir>/<execution id>.work`` and sleeps ``state["sleep"]`` seconds
in between. Importable by module so Ray workers load it.
"""

from __future__ import annotations

import time
from pathlib import Path

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict


class WorkState(TypedDict, total=False):
    x: int
    marker_dir: str
    sleep: float


def _note(state: WorkState, config: RunnableConfig, text: str) -> None:
    eid = config["configurable"]["thread_id"]
    with open(Path(state["marker_dir"]) / f"{eid}.work", "a") as fh:
        fh.write(text + "\n")


def prep(state: WorkState) -> dict:
    return {"x": state["x"] + 1}


def work(state: WorkState, config: RunnableConfig) -> dict:
    import ray

    node_id = ray.get_runtime_context().get_node_id()
    _note(state, config, f"start {node_id}")
    time.sleep(state.get("sleep", 0.0))
    _note(state, config, f"end {node_id}")
    return {"x": state["x"] * 10}


def graph():
    builder = StateGraph(WorkState)
    builder.add_node("prep", prep)
    builder.add_node("work", work)
    builder.add_edge(START, "prep")
    builder.add_edge("prep", "work")
    builder.add_edge("work", END)
    return builder.compile()


def work_log(marker_dir: str | Path, execution_id: str) -> list[tuple[str, str]]:
    """(event, ray node id) pairs the work node of an execution wrote."""
    path = Path(marker_dir) / f"{execution_id}.work"
    if not path.exists():
        return []
    return [tuple(line.split()) for line in path.read_text().splitlines() if line.strip()]  # type: ignore[misc]
