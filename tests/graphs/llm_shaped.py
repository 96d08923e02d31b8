"""Graphs of LLM-shaped nodes (they wait, they do not compute) for the I/O-lane tests.

Importable so Ray workers can load the node functions. Node bodies record what
they observe in files named by the state, since they run in other processes.
"""

from __future__ import annotations

import asyncio
import operator
import os
import time
from pathlib import Path
from typing import Annotated

from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict


class Call(TypedDict, total=False):
    x: int
    log: str
    seconds: float
    done: list[str]


def _record(path: str, event: str) -> None:
    with open(path, "a") as handle:  # one short append per event: atomic across processes
        handle.write(f"{time.time_ns()} {event} {os.getpid()}\n")


async def llm_call(state: Call) -> dict:
    """An ``async def`` node that waits ``seconds`` like an API call, logging its start and end."""
    _record(state["log"], "start")
    try:
        await asyncio.sleep(state.get("seconds", 1.0))
    finally:
        _record(state["log"], "end")
    return {"x": state["x"] + 1}


def one_call_graph():
    graph = StateGraph(Call)
    graph.add_node("llm", llm_call)
    graph.add_edge(START, "llm")
    graph.add_edge("llm", END)
    return graph.compile()


async def llm_second(state: Call) -> dict:
    await asyncio.sleep(state.get("seconds", 1.0))
    return {"x": state["x"] * 2}


def two_call_graph():
    graph = StateGraph(Call)
    graph.add_node("first", llm_call)
    graph.add_node("second", llm_second)
    graph.add_edge(START, "first")
    graph.add_edge("first", "second")
    graph.add_edge("second", END)
    return graph.compile()


def sync_sleeper(state: Call) -> dict:
    """A sync node that sleeps ``seconds`` (past its timeout in the timeout tests)."""
    time.sleep(state.get("seconds", 1.0))
    return {"x": state["x"] + 1}


def sleeper_graph():
    graph = StateGraph(Call)
    graph.add_node("sleeper", sync_sleeper)
    graph.add_edge(START, "sleeper")
    graph.add_edge("sleeper", END)
    return graph.compile()


async def async_sleeper(state: Call) -> dict:
    await asyncio.sleep(state.get("seconds", 1.0))
    return {"x": state["x"] + 1}


def async_sleeper_graph():
    graph = StateGraph(Call)
    graph.add_node("sleeper", async_sleeper)
    graph.add_edge(START, "sleeper")
    graph.add_edge("sleeper", END)
    return graph.compile()


# A resource held by one execution's node while another execution's node waits for it
class Held(TypedDict, total=False):
    log: str
    role: str
    done: Annotated[list[str], operator.add]


def holder(state: Held) -> dict:
    """Holds its (large) CPU request: tells the gate it runs, and once the gate has passed, twenty seconds more."""
    Path(state["log"] + ".held").touch()
    gated = Path(state["log"] + ".gated")
    while not gated.exists():
        time.sleep(0.1)
    time.sleep(20)
    return {"done": ["holder"]}


def gate(state: Held) -> dict:
    """Waits (on its own, tiny request) until the holder runs, so the waiter queues behind it."""
    marker = Path(state["log"] + ".held")
    while not marker.exists():
        time.sleep(0.1)
    Path(state["log"] + ".gated").touch()
    return {"done": ["gate"]}


def waiter(state: Held) -> dict:
    """Needs the CPUs the holder holds, then runs a second."""
    time.sleep(1)
    return {"done": ["waiter"]}


def held_resource_graph():
    """``role="hold"`` runs the holder; ``role="wait"`` runs the gate, then the waiter.

    Two executions of it, one of each role, make the waiter queue behind the
    holder (two nodes of one execution would share a LangGraph step, and the
    waiter's step would start only after the holder's ended).
    """
    graph = StateGraph(Held)
    graph.add_node("holder", holder)
    graph.add_node("gate", gate)
    graph.add_node("waiter", waiter)
    graph.add_conditional_edges(START, lambda s: "holder" if s["role"] == "hold" else "gate", ["holder", "gate"])
    graph.add_edge("gate", "waiter")
    graph.add_edge("holder", END)
    graph.add_edge("waiter", END)
    return graph.compile()


def crash_once(state: Call) -> dict:
    """Kills its own worker process on the first attempt (an actor crash), then succeeds."""
    marker = Path(state["log"] + ".crashed")
    if not marker.exists():
        marker.touch()
        os._exit(1)
    Path(state["log"] + ".retried").touch()  # its mtime: when the retry ran
    return {"x": state["x"] + 1}


def crash_graph():
    graph = StateGraph(Call)
    graph.add_node("crash", crash_once)
    graph.add_edge(START, "crash")
    graph.add_edge("crash", END)
    return graph.compile()


class Crowd(TypedDict, total=False):
    x: int
    log: str
    role: str
    peers: int


def _lines(path: str) -> int:
    try:
        return len(Path(path).read_text().splitlines())
    except FileNotFoundError:
        return 0


def crash_among_peers(state: Crowd) -> dict:
    """``role="crash"``: once ``peers`` other calls run, kill its own process (first attempt only).

    ``role="peer"``: log its start, wait until the crash has happened and two seconds more, log its end.
    So the crash hits one actor of the pool while the others hold calls.
    """
    log, deadline = state["log"], time.monotonic() + 60
    crashed = Path(log + ".crashed")
    if state["role"] == "crash":
        if not crashed.exists():
            while _lines(log) < state["peers"] and time.monotonic() < deadline:
                time.sleep(0.05)
            crashed.touch()
            os._exit(1)
        return {"x": state["x"] + 1}
    _record(log, "start")
    while not crashed.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(2)
    _record(log, "end")
    return {"x": state["x"] + 1}


def crowd_graph():
    graph = StateGraph(Crowd)
    graph.add_node("call", crash_among_peers)
    graph.add_edge(START, "call")
    graph.add_edge("call", END)
    return graph.compile()
