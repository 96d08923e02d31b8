"""The SQLite checkpoint saver commits concurrent executions' writes together, and stays LangGraph's saver."""

from __future__ import annotations

import operator
import sqlite3
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Annotated, TypedDict
from unittest import mock

import pytest
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph

from wtb_prefect.run import sqlite_saver
from wtb_prefect.run.sqlite_saver import GroupCommitSqliteSaver


def _saver(path: Path) -> tuple[GroupCommitSqliteSaver, list[str]]:
    conn = sqlite3.connect(str(path), check_same_thread=False)
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    saver = GroupCommitSqliteSaver(conn)
    saver.setup()
    return saver, statements


def _config(thread_id: str) -> dict:
    return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}


def _put_from_threads(saver: GroupCommitSqliteSaver, thread_ids: list[str]) -> dict[str, BaseException | None]:
    """Each thread id's checkpoint put from its own thread, all queued while the saver's lock is held."""
    outcomes: dict[str, BaseException | None] = {}
    queued = threading.Condition()
    waiting = 0

    class QueuedWrite(Future):
        """A put's write, counted when the put waits for its commit (it has queued the write by then)."""

        def result(self, timeout: float | None = None) -> None:
            nonlocal waiting
            with queued:
                waiting += 1
                queued.notify_all()
            return super().result(timeout)

    def put(thread_id: str) -> None:
        try:
            saver.put(_config(thread_id), empty_checkpoint(), {"source": "input", "step": -1}, {})
            outcomes[thread_id] = None
        except BaseException as exc:
            outcomes[thread_id] = exc

    threads = [threading.Thread(target=put, args=(t,)) for t in thread_ids]
    with mock.patch.object(sqlite_saver, "Future", QueuedWrite):
        with saver.lock:  # the writer waits here: every put queues behind it
            for thread in threads:
                thread.start()
            with queued:  # the writer holds the first put(s) it took, the rest are queued
                assert queued.wait_for(lambda: waiting >= len(thread_ids), timeout=60), "puts did not queue"
        for thread in threads:
            thread.join(30)
    return outcomes


def test_concurrent_writes_are_committed_together_and_read_back(tmp_path):
    saver, statements = _saver(tmp_path / "c.sqlite")
    ids = [f"execution-{i}" for i in range(16)]
    statements.clear()
    outcomes = _put_from_threads(saver, ids)
    assert outcomes == dict.fromkeys(ids)
    commits = [s for s in statements if s.strip().upper() == "COMMIT"]
    assert 1 <= len(commits) <= 2  # the first put alone, then the 15 that queued meanwhile in one transaction
    for thread_id in ids:  # each put returned after its commit: readable at once
        assert saver.get_tuple(_config(thread_id)) is not None
    fresh = SqliteSaver(sqlite3.connect(str(tmp_path / "c.sqlite"), check_same_thread=False))
    assert {t.config["configurable"]["thread_id"] for t in fresh.list(None)} == set(ids)  # on disk


def test_a_refused_write_fails_alone_in_its_group(tmp_path):
    saver, _ = _saver(tmp_path / "c.sqlite")
    with saver.lock:
        saver.conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON checkpoints WHEN NEW.thread_id = 'refused' "
            "BEGIN SELECT RAISE(ABORT, 'refused by the database'); END"
        )
        saver.conn.commit()
    ids = [f"execution-{i}" for i in range(8)] + ["refused"]
    outcomes = _put_from_threads(saver, ids)
    assert isinstance(outcomes.pop("refused"), sqlite3.IntegrityError)
    assert outcomes == dict.fromkeys(ids[:-1])
    assert saver.get_tuple(_config("refused")) is None
    assert all(saver.get_tuple(_config(t)) is not None for t in ids[:-1])


class _State(TypedDict):
    log: Annotated[list[str], operator.add]


def _graph(checkpointer):
    builder = StateGraph(_State)
    for name in ("a", "b", "c"):
        builder.add_node(name, lambda state, name=name: {"log": [name]})
    builder.add_edge(START, "a")
    builder.add_edge("a", "b")
    builder.add_edge("a", "c")  # b and c in one superstep: two tasks' writes
    builder.add_edge(["b", "c"], END)
    return builder.compile(checkpointer=checkpointer)


@pytest.mark.parametrize("durability", ["sync", "async", "exit"])
def test_a_graph_checkpoints_as_with_langgraphs_sqlite_saver(tmp_path, durability):
    """Same history (steps, sources, next nodes, values) as SqliteSaver, rollback to a checkpoint included."""
    grouped, _ = _saver(tmp_path / "grouped.sqlite")
    plain = SqliteSaver(sqlite3.connect(str(tmp_path / "plain.sqlite"), check_same_thread=False))

    def history(saver) -> list[tuple]:
        graph = _graph(saver)
        config = {"configurable": {"thread_id": "t"}}
        graph.invoke({"log": []}, config, durability=durability)
        states = list(graph.get_state_history(config))
        replay = [s for s in states if s.next == ("b", "c")]  # none with "exit": only the last is written
        if replay:
            graph.invoke(None, replay[0].config, durability=durability)  # a fork from a past checkpoint
        return [
            (s.metadata["step"], s.metadata["source"], s.next, sorted(s.values["log"]))
            for s in graph.get_state_history(config)
        ]

    assert history(grouped) == history(plain)
