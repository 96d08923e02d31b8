"""Graphs whose node bodies count their own executions (for the node-call sharing tests).

Each body appends one line to ``$WTB_HOME/counts/<tag>.<node>`` (``tag`` comes
from the state, so tests do not see each other's counts), in the flow process
or in a Ray worker alike.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph


class CountState(TypedDict, total=False):
    tag: str
    query: str
    doc: str
    draw: float
    answer: str
    gate: str


def _count(state: dict[str, Any], node: str) -> None:
    folder = Path(os.environ["WTB_HOME"]) / "counts"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{state['tag']}.{node}", "a") as fh:
        fh.write(f"{os.getpid()}\n")


def counts(tag: str, node: str) -> int:
    """How many times ``node`` ran for ``tag``."""
    path = Path(os.environ["WTB_HOME"]) / "counts" / f"{tag}.{node}"
    return len(path.read_text().splitlines()) if path.exists() else 0


def fetch(state: CountState) -> dict:
    _count(state, "fetch")
    time.sleep(0.2)
    return {"doc": f"doc about {state['query']}"}


def slow_fetch(state: CountState) -> dict:
    _count(state, "slow_fetch")
    time.sleep(1.0)
    return {"doc": f"slow doc about {state['query']}"}


def slower_fetch(state: CountState) -> dict:
    _count(state, "slower_fetch")
    time.sleep(4.0)
    return {"doc": f"slower doc about {state['query']}"}


GATE_WAIT_S = 240.0


def gated_fetch(state: CountState) -> dict:
    """Holds until the file ``state["gate"]`` exists (the test opens it), then answers."""
    _count(state, "gated_fetch")
    deadline = time.monotonic() + GATE_WAIT_S
    while not Path(state["gate"]).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gated_fetch waited {GATE_WAIT_S:.0f} s for the test to open the gate {state['gate']}")
        time.sleep(0.05)  # polls the gate file
    return {"doc": f"gated doc about {state['query']}"}


def sample(state: CountState) -> dict:
    _count(state, "sample")
    return {"draw": random.random()}


def answer_short(state: CountState) -> dict:
    _count(state, "answer")
    return {"answer": f"{state['doc'][:12]} {state.get('draw', '')}"}


def answer_long(state: CountState) -> dict:
    _count(state, "answer_long")
    return {"answer": f"{state['doc']} (long) {state.get('draw', '')}"}


def answer_v2(state: CountState) -> dict:
    _count(state, "answer_v2")
    return {"answer": f"v2: {state['doc']}"}


def _chain(schema: type, *nodes: tuple[str, Any]) -> Any:
    """START -> the nodes, in order -> END, compiled."""
    graph = StateGraph(schema).add_sequence(list(nodes))
    graph.add_edge(START, nodes[0][0])
    graph.add_edge(nodes[-1][0], END)
    return graph.compile()


def create_fetch_answer() -> Any:
    """fetch -> answer."""
    return _chain(CountState, ("fetch", fetch), ("answer", answer_short))


def create_slow() -> Any:
    """slow_fetch alone (a one-second fetch)."""
    return _chain(CountState, ("fetch", slow_fetch))


def create_slower() -> Any:
    """slower_fetch alone (a four-second fetch)."""
    return _chain(CountState, ("fetch", slower_fetch))


def create_gated() -> Any:
    """gated_fetch alone (held until its gate file exists)."""
    return _chain(CountState, ("fetch", gated_fetch))


def create_sampled() -> Any:
    """fetch -> sample (a random draw) -> answer."""
    return _chain(CountState, ("fetch", fetch), ("sample", sample), ("answer", answer_short))


def polish(state: CountState) -> dict:
    _count(state, "polish")
    return {"answer": state["answer"].upper()}


def create_three() -> Any:
    """fetch -> answer -> polish."""
    return _chain(CountState, ("fetch", fetch), ("answer", answer_short), ("polish", polish))


@dataclass
class Unpicklable:
    """A value LangGraph's checkpointer stores (msgpack) but pickle refuses."""

    text: str

    def __reduce_ex__(self, protocol: int) -> Any:
        raise TypeError("Unpicklable refuses to be pickled")


def fetch_unpicklable(state: CountState) -> dict:
    _count(state, "fetch_unpicklable")
    return {"doc": Unpicklable(state["query"])}


def answer_any(state: CountState) -> dict:
    _count(state, "answer_any")
    return {"answer": f"answer about {getattr(state['doc'], 'text', state['doc'])}"}


def create_unpicklable() -> Any:
    """fetch (returns an unpicklable value) -> answer."""
    return _chain(CountState, ("fetch", fetch_unpicklable), ("answer", answer_any))


# ─── Executions that track files (a project with file_tracking; bodies use wtb_prefect.workspace()) ───


class FileState(TypedDict, total=False):
    tag: str
    query: str
    notes: str
    report: str
    answer: str


def read_notes(state: FileState) -> dict:
    """Reads a tracked file and changes none: reused like any other call."""
    from wtb_prefect import workspace

    _count(state, "read_notes")
    return {"notes": (workspace() / "data" / "notes.txt").read_text()}


def write_report(state: FileState) -> dict:
    """Writes a tracked file: never reused (a hit would not write the file)."""
    from wtb_prefect import workspace

    _count(state, "write_report")
    name = f"report-{state['query']}.txt"
    (workspace() / "outputs" / name).write_text(f"{state['query']}: {state['notes']}")
    return {"report": name}


def answer_file(state: FileState) -> dict:
    _count(state, "answer_file")
    return {"answer": f"see {state['report']}"}


def answer_file_long(state: FileState) -> dict:
    _count(state, "answer_file_long")
    return {"answer": f"see {state['report']} (long)"}


def create_files() -> Any:
    """read_notes -> write_report -> answer."""
    return _chain(FileState, ("read", read_notes), ("write", write_report), ("answer", answer_file))


def long_fetch(state: CountState) -> dict:
    _count(state, "long_fetch")
    time.sleep(2.0)
    return {"doc": f"long doc about {state['query']}"}


def create_long_answer() -> Any:
    """long_fetch (a two-second fetch) -> answer."""
    return _chain(CountState, ("fetch", long_fetch), ("answer", answer_short))
