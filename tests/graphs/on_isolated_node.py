"""A three-node graph whose middle node runs on the isolated Ray node, and proves it.

``probe`` requests the custom resource only the isolated node offers (the
project sets that); it returns the IP of the Ray node it ran on and whether
it could see a file of the repository checkout (``state["checkout_file"]``).
The variant ``probe:bm25`` runs in its own uv environment with ``rank-bm25``,
a package the node's image lacks, and returns the version it imported.
Importable by module reference (the cluster's nodes get it through Ray's
``working_dir``). :func:`make_project` is the project the isolated-cluster
tests run, ``project`` that project as ``wtb batch`` loads it
(``<module>:project``), its settings from ``WTB_ISO_*`` variables.
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
    sleep_s: float


def prep(state: ProbeState) -> dict:
    return {"x": state["x"] + 1}


def probe(state: ProbeState) -> dict:
    """Where this ran, and whether the checkout is visible there (after ``sleep_s``, to be caught in flight)."""
    import time

    import ray

    time.sleep(state.get("sleep_s", 0.0))

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


SMALL = {"num_cpus": 0.25, "memory": "64MB"}


def make_project(*, on_node: bool = True, probe_timeout: float = 60.0, name: str = "iso_probe", address: str = "auto"):
    """The project: ``probe`` (and its ``bm25`` variant, in its own uv env) on the isolated node when ``on_node``."""
    from wtb_prefect import (
        EnvironmentConfig,
        EnvSpec,
        ExecutionConfig,
        NodeResourceConfig,
        RayConfig,
        WorkflowProject,
    )

    # a Ray task per call (not an I/O lane's actor): where it ran is per call, and a lost node loses only its calls
    placed = {**SMALL, "io_bound": False}
    if on_node:
        placed["custom_resources"] = {"isolated": 1}
    project = WorkflowProject(
        name=name,
        graph_factory=graph,
        execution=ExecutionConfig(
            batch_executor="ray",
            default_node_resources=NodeResourceConfig(**SMALL),
            node_resources={"probe": NodeResourceConfig(**placed)},
            node_timeouts={"probe": probe_timeout},
            ray_config=RayConfig(address=address, max_retries=2, retry_delay=0.5),
            checkpoint_storage="sqlite",
            node_cache="off",
        ),
        environment=EnvironmentConfig(granularity="variant"),
    )
    bm25 = os.environ.get("WTB_ISO_BM25", "rank-bm25")
    project.register_variant(
        "probe", "bm25", probe_bm25, environment=EnvSpec(dependencies=[bm25]), resources=NodeResourceConfig(**placed)
    )
    return project


def __getattr__(name: str):
    if name == "project":  # built when asked for, so importing the module on a node builds nothing
        return make_project(on_node=os.environ.get("WTB_ISO_ON_NODE", "1") == "1")
    raise AttributeError(name)


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
