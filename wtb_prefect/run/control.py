"""Pausing a running execution at its next superstep boundary, from any process.

A pause (or a manual checkpoint) is LangGraph's cooperative drain: every run
of an execution gets a fresh :class:`langgraph.runtime.RunControl`; asking
for a drain lets the running node finish, LangGraph saves the checkpoint of
that superstep and raises :class:`langgraph.errors.GraphDrained` instead of
starting the next one. Requests are written to the execution index, so a
process other than the one running the execution (the CLI, another bench) can
make them; a watcher thread in the running process turns them into drains.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from langgraph.runtime import RunControl

from wtb_prefect.run.execution_index import ExecutionIndex

__all__ = ["CHECKPOINT", "PAUSE", "controlled_run", "request"]

PAUSE = "pause"
CHECKPOINT = "checkpoint"
POLL_S = 0.25

_active: dict[str, tuple[RunControl, ExecutionIndex]] = {}
_lock = threading.Lock()
_watcher: threading.Thread | None = None


@contextmanager
def controlled_run(execution_id: str, index: ExecutionIndex) -> Iterator[RunControl]:
    """A fresh RunControl for one ``invoke`` of an execution, drained on request.

    A request already pending in the index (a pause asked for before the
    execution started) applies at once.
    """
    control = RunControl()
    pending = index.requests([execution_id]).get(execution_id)
    if pending:
        control.request_drain(pending)
    with _lock:
        _active[execution_id] = (control, index)
        _ensure_watcher()
    try:
        yield control
    finally:
        with _lock:
            if _active.get(execution_id, (None,))[0] is control:
                del _active[execution_id]


def request(execution_id: str, kind: str, index: ExecutionIndex) -> None:
    """Ask the execution to drain at its next boundary for ``kind`` (pause or checkpoint)."""
    index.set_request(execution_id, kind)
    with _lock:
        entry = _active.get(execution_id)
    if entry is not None:  # running in this process: no need to wait for the watcher
        entry[0].request_drain(kind)


def _ensure_watcher() -> None:
    global _watcher
    if _watcher is None or not _watcher.is_alive():
        _watcher = threading.Thread(target=_watch, name="wtb-control-watcher", daemon=True)
        _watcher.start()


def _watch() -> None:
    """Apply requests written by other processes to the executions running here."""
    stop = threading.Event()
    while not stop.wait(POLL_S):
        with _lock:
            active = dict(_active)
        by_index: dict[int, tuple[ExecutionIndex, list[str]]] = {}
        for eid, (_, index) in active.items():
            by_index.setdefault(id(index), (index, []))[1].append(eid)
        for index, ids in by_index.values():
            try:
                pending = index.requests(ids)
            except Exception:  # a busy index: try again on the next poll
                continue
            for eid, kind in pending.items():
                control = active[eid][0]
                if not control.drain_requested:
                    control.request_drain(kind)
