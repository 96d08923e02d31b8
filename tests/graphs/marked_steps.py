"""Graphs and projects for the checkpoint, control and crash-recovery tests.

Every node appends its name to files named after the execution (its LangGraph
thread id) in ``state["marker_dir"]``: ``<eid>.started`` when it starts and
``<eid>.runs`` when it ends, so a test counts exactly which nodes ran. The
module is importable, so Ray workers and subprocess drivers can load it.
"""

from __future__ import annotations

import operator
import os
import time
from pathlib import Path
from typing import Annotated

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from wtb_prefect import ExecutionConfig, NodeResourceConfig, RayConfig, WorkflowProject

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
NODES = ("a", "b", "c", "d")


class CtlState(TypedDict, total=False):
    x: int
    log: Annotated[list[str], operator.add]
    marker_dir: str
    slow_node: str
    sleep: float
    fail_node: str
    gate: str
    crash_node: str


def _mark(state: CtlState, config: RunnableConfig, suffix: str, text: str) -> None:
    eid = config["configurable"]["thread_id"]
    with open(Path(state["marker_dir"]) / f"{eid}.{suffix}", "a") as fh:
        fh.write(text + "\n")


def _step(name: str, state: CtlState, config: RunnableConfig) -> dict:
    _mark(state, config, "started", name)
    if state.get("slow_node") == name:
        time.sleep(state.get("sleep", 0.0))  # simulated work
        if state.get("gate"):
            wait_for_gate(state["gate"], f"node {name}")
    if state.get("fail_node") == name:
        raise RuntimeError(f"node {name} fails on purpose")
    if state.get("crash_node") == name and _first_crash(state):
        os._exit(1)  # the worker process dies mid-call, as an out-of-memory kill would end it
    _mark(state, config, "runs", name)
    return {"x": state["x"] * 3 + len(state.get("log", [])), "log": [name]}


def _first_crash(state: CtlState) -> bool:
    """True for the first call that reaches its ``crash_node`` in this marker folder (later calls go on)."""
    try:
        with open(Path(state["marker_dir"]) / "crashed", "x"):
            return True
    except FileExistsError:
        return False


GATE_WAIT_S = 240.0


def wait_for_gate(gate: str | Path, holder: str) -> None:
    """Hold ``holder`` until the test creates the file ``gate``; past :data:`GATE_WAIT_S` raise, naming it."""
    deadline = time.monotonic() + GATE_WAIT_S
    while not Path(gate).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{holder} waited {GATE_WAIT_S:.0f} s for the test to open the gate {gate}")
        time.sleep(0.05)  # polls the gate file: the test creates it when the node may go on


def node_a(state: CtlState, config: RunnableConfig) -> dict:
    return _step("a", state, config)


def node_b(state: CtlState, config: RunnableConfig) -> dict:
    return _step("b", state, config)


def node_c(state: CtlState, config: RunnableConfig) -> dict:
    return _step("c", state, config)


def node_d(state: CtlState, config: RunnableConfig) -> dict:
    return _step("d", state, config)


def linear_graph():
    """a -> b -> c -> d."""
    graph = StateGraph(CtlState)
    for name, fn in zip(NODES, (node_a, node_b, node_c, node_d)):
        graph.add_node(name, fn)
    graph.add_edge(START, "a")
    for first, second in zip(NODES, NODES[1:]):
        graph.add_edge(first, second)
    graph.add_edge("d", END)
    return graph.compile()


def flaky(state: CtlState, config: RunnableConfig) -> dict:
    """Fails on its first attempt of an execution, succeeds afterwards."""
    _mark(state, config, "started", "flaky")
    eid = config["configurable"]["thread_id"]
    attempts = Path(state["marker_dir"]) / f"{eid}.started"
    if attempts.read_text().split().count("flaky") == 1:
        raise RuntimeError("first attempt fails")
    _mark(state, config, "runs", "flaky")
    return {"x": state["x"] + 1, "log": ["flaky"]}


def pid_then_sleep(state: CtlState, config: RunnableConfig) -> dict:
    """Writes its worker pid; the first attempt then sleeps long (to be killed)."""
    eid = config["configurable"]["thread_id"]
    pids = Path(state["marker_dir"]) / f"{eid}.pids"
    first = not pids.exists()
    with open(pids, "a") as fh:
        fh.write(f"{os.getpid()}\n")
    if first:
        time.sleep(state.get("sleep", 60.0))
    _mark(state, config, "runs", "worker")
    return {"x": state["x"] + 1, "log": ["worker"]}


def flaky_graph():
    graph = StateGraph(CtlState)
    graph.add_node("a", node_a)
    graph.add_node("flaky", flaky)
    graph.add_edge(START, "a")
    graph.add_edge("a", "flaky")
    graph.add_edge("flaky", END)
    return graph.compile()


def worker_graph():
    graph = StateGraph(CtlState)
    graph.add_node("a", node_a)
    graph.add_node("worker", pid_then_sleep)
    graph.add_edge(START, "a")
    graph.add_edge("a", "worker")
    graph.add_edge("worker", END)
    return graph.compile()


def make_project(
    name: str,
    storage: str = "sqlite",
    *,
    factory=linear_graph,
    strategy: str = "per_node",
    max_retries: int = 0,
    retry_delay: float = 0.0,
    node_timeouts: dict[str, float] | None = None,
    default_timeout: int = 300,
    node_cache: str = "batch",
) -> WorkflowProject:
    """A project on the given checkpoint storage with small Ray requests.

    Node-call sharing is on ("batch", what users get): the control and fault
    tests run through it. Their cases differ in ``x``, so no two executions
    make the same call unless a test means them to (variants differing only
    at their last node); ``node_cache="off"`` runs every call.
    """
    return WorkflowProject(
        name=name,
        graph_factory=factory,
        execution=ExecutionConfig(
            batch_executor="ray",
            default_node_resources=NodeResourceConfig(num_cpus=0.25, memory="64MB"),
            ray_config=RayConfig(max_retries=max_retries, retry_delay=retry_delay),
            checkpoint_storage=storage,
            checkpoint_url=PG_URL if storage == "postgres" else None,
            checkpoint_strategy=strategy,
            node_timeouts=node_timeouts or {},
            default_timeout=default_timeout,
            node_cache=node_cache,
        ),
    )


def counts(marker_dir: str | Path, execution_id: str, suffix: str = "runs") -> dict[str, int]:
    """How many times each node of an execution started or ended."""
    path = Path(marker_dir) / f"{execution_id}.{suffix}"
    result: dict[str, int] = {}
    if path.exists():
        for line in path.read_text().split():
            result[line] = result.get(line, 0) + 1
    return result


def expected_final(x: int = 1) -> dict:
    """The x and log the linear graph ends with from ``x``."""
    log: list[str] = []
    for name in NODES:
        x = x * 3 + len(log)
        log.append(name)
    return {"x": x, "log": log}
