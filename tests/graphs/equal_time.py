"""A one-node graph whose variants all take the same time, for the fair-latency test.

Importable by module so Ray workers can load the node functions.
"""

from __future__ import annotations

import os
import time

from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

NODE_SECONDS = 0.15


class TimedState(TypedDict, total=False):
    x: int
    y: int
    worker_pid: int


def work(state: TimedState) -> dict:
    time.sleep(NODE_SECONDS)
    return {"y": state["x"] * 2, "worker_pid": os.getpid()}


def twin_a(state: TimedState) -> dict:
    """The same work under another name."""
    time.sleep(NODE_SECONDS)
    return {"y": state["x"] * 2, "worker_pid": os.getpid()}


def twin_b(state: TimedState) -> dict:
    """The same work under a third name."""
    time.sleep(NODE_SECONDS)
    return {"y": state["x"] * 2, "worker_pid": os.getpid()}


def timed_graph():
    graph = StateGraph(TimedState)
    graph.add_node("work", work)
    graph.add_edge(START, "work")
    graph.add_edge("work", END)
    return graph.compile()


def doubled(final_state: dict, case: dict) -> float:
    """1.0 when y is twice x."""
    return 1.0 if final_state.get("y") == 2 * case["x"] else 0.0


def same_answer(state_a: dict, state_b: dict, case: dict) -> float:
    """A comparative judge: the larger y wins (all equal here: ties)."""
    return float((state_a["y"] > state_b["y"]) - (state_a["y"] < state_b["y"]))


def timed_project(name: str, cold_key: str):
    """The project; ``cold_key`` gives its nodes a Ray runtime env (env vars only) no worker has yet."""
    from wtb_prefect import EnvironmentConfig, EnvSpec, ExecutionConfig, NodeResourceConfig, RayConfig, WorkflowProject

    project = WorkflowProject(
        name=name,
        graph_factory=timed_graph,
        environment=EnvironmentConfig(default_env=EnvSpec(env_vars={"WTB_COLD_KEY": cold_key})),
        execution=ExecutionConfig(
            default_node_resources=NodeResourceConfig(num_cpus=0.25, memory="64MB"),
            ray_config=RayConfig(max_retries=0),
        ),
    )
    project.register_variant("work", "twin_a", twin_a)
    project.register_variant("work", "twin_b", twin_b)
    project.register_evaluator("doubled", doubled)
    project.register_comparative_evaluator("larger_y", same_answer, both_orders=True)
    return project


MATRIX = [{}, {"work": "twin_a"}, {"work": "twin_b"}]
CASES = [{"x": i, "case_id": f"c{i}"} for i in range(12)]
