"""A question-answering graph with three answerers of planted quality, for the racing tests.

``retriever`` (shared by every variant: variants differ only at ``answerer``)
then ``answerer``: ``right`` always answers right, ``mostly`` is wrong on every
sixth case, ``wrong`` never is. The evaluator ``answer_hit`` scores 0/1.
A case with ``hold`` set makes the answerer wait until that file exists
(after writing ``hold + '.reached'``), so a test can kill a driver mid-race.

Importable by module so Ray workers can load the node functions.
"""

from __future__ import annotations

import time
from pathlib import Path

from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from wtb_prefect import WorkflowProject


class RacedState(TypedDict, total=False):
    n: int
    hold: str
    document: str
    answer: str


def cases(count: int, hold: dict[int, str] | None = None) -> list[dict]:
    """``count`` cases ``c0``, ``c1``, ...; case ``i`` in ``hold`` waits for the file ``hold[i]``."""
    hold = hold or {}
    return [
        {"n": i, "expected": f"answer-{i}", "case_id": f"c{i}", **({"hold": hold[i]} if i in hold else {})}
        for i in range(count)
    ]


def retriever(state: RacedState) -> dict:
    return {"document": f"answer-{state['n']}"}


def _wait(state: RacedState) -> None:
    hold = state.get("hold")
    if not hold:
        return
    Path(hold + ".reached").touch()
    deadline = time.monotonic() + 300
    while not Path(hold).exists() and time.monotonic() < deadline:
        time.sleep(0.1)


def right_answerer(state: RacedState) -> dict:
    _wait(state)
    return {"answer": state["document"]}


def mostly_answerer(state: RacedState) -> dict:
    _wait(state)
    return {"answer": "unsure" if state["n"] % 6 == 0 else state["document"]}


def wrong_answerer(state: RacedState) -> dict:
    _wait(state)
    return {"answer": "wrong"}


def answer_hit(final_state: dict, test_case: dict) -> float:
    return float(final_state.get("answer") == test_case.get("expected"))


def graph():
    g = StateGraph(RacedState)
    g.add_node("retriever", retriever)
    g.add_node("answerer", right_answerer)
    g.add_edge(START, "retriever")
    g.add_edge("retriever", "answerer")
    g.add_edge("answerer", END)
    return g.compile()


MATRIX = [{"answerer": "right"}, {"answerer": "mostly"}, {"answerer": "wrong"}]


def make_project(name: str) -> WorkflowProject:
    """The project with answerer variants ``right`` (the default's body), ``mostly`` and ``wrong``."""
    project = WorkflowProject(name=name, graph_factory=graph, state_schema=RacedState)
    project.register_variant("answerer", "right", right_answerer)
    project.register_variant("answerer", "mostly", mostly_answerer)
    project.register_variant("answerer", "wrong", wrong_answerer)
    project.register_evaluator("answer_hit", answer_hit)
    return project


def project() -> WorkflowProject:
    """The project under a fixed name, for ``wtb batch tests.graphs.raced_qa:project``."""
    return make_project("raced_cli")
