"""LangGraph checkpoint savers for the configured ``checkpoint_storage``, and
reading and rewinding an execution's checkpoints.

Storage:

* ``memory``: LangGraph's ``InMemorySaver``; lives as long as the process
  (nothing survives it: no resume in another process, no crash recovery).
* ``sqlite`` (default): ``SqliteSaver`` on ``checkpoints.sqlite`` in the
  project's state folder (or the file ``checkpoint_url`` names), in WAL mode
  with a busy timeout, so concurrent executions and several processes share it;
  the writes of a process's concurrent executions are committed together
  (:class:`~wtb_prefect.run.sqlite_saver.GroupCommitSqliteSaver`).
* ``postgres``: ``PostgresSaver`` on a connection pool to ``checkpoint_url``
  (e.g. ``postgresql://postgres@127.0.0.1:5432/test``).

Strategy (see :func:`durability_for`): ``per_node``, ``per_step``, ``manual``.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver

from wtb_prefect.config import ExecutionConfig
from wtb_prefect.errors import ConfigError, ServiceError, UnknownCheckpointError

__all__ = ["Checkpoint", "durability_for", "find_checkpoint", "list_checkpoints", "open_checkpointer", "rewind"]

_savers: dict[str, BaseCheckpointSaver] = {}
_lock = threading.Lock()

_DURABILITY = {"per_node": "sync", "per_step": "async", "manual": "exit"}


def durability_for(config: ExecutionConfig) -> str:
    """LangGraph's ``durability`` for a ``checkpoint_strategy``.

    * ``per_node``: a checkpoint is written, synchronously, after every
      superstep (each node's write is durable before the next node starts;
      nodes of one superstep run in parallel and share its checkpoint). A
      killed driver loses at most the nodes that were running.
    * ``per_step``: the same checkpoints, written asynchronously while the next
      step runs (faster; the last step may be lost if the process dies).
    * ``manual``: a checkpoint is written only when a run exits (it ends,
      fails or is paused) and when one is asked for with
      ``WTBTestBench.checkpoint(execution_id)``, which takes it at the next
      superstep boundary and lets the execution go on. A killed driver loses
      everything since the last of them.
    """
    return _DURABILITY[config.checkpoint_strategy]


def open_checkpointer(config: ExecutionConfig, state_dir: Path) -> BaseCheckpointSaver:
    """The shared checkpoint saver of a project (one per storage location and process).

    Raises:
        ServiceError: the PostgreSQL database does not answer.
    """
    storage = config.checkpoint_storage
    if storage == "memory":
        key = f"memory:{state_dir}"
    elif storage == "sqlite":
        path = Path(config.checkpoint_url) if config.checkpoint_url else state_dir / "checkpoints.sqlite"
        key = f"sqlite:{path.resolve()}"
    else:
        key = f"postgres:{config.checkpoint_url}"
    with _lock:
        saver = _savers.get(key)
        if saver is None:
            saver = _open(storage, config, state_dir)
            _savers[key] = saver
        return saver


def _open(storage: str, config: ExecutionConfig, state_dir: Path) -> Any:
    if storage == "memory":
        return InMemorySaver()
    if storage == "sqlite":
        from wtb_prefect.run.sqlite_saver import GroupCommitSqliteSaver

        path = Path(config.checkpoint_url) if config.checkpoint_url else state_dir / "checkpoints.sqlite"
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA busy_timeout=30000")
        # WAL + NORMAL: a commit survives a killed process (what "nothing lost"
        # needs) without an fsync per checkpoint, which serialized every
        # concurrent execution behind the saver's lock.
        conn.execute("PRAGMA synchronous=NORMAL")
        saver = GroupCommitSqliteSaver(conn)
        saver.setup()
        return saver
    from langgraph.checkpoint.postgres import PostgresSaver
    from psycopg.rows import dict_row
    from psycopg_pool import ConnectionPool

    url = config.checkpoint_url
    if not url:
        raise ConfigError("checkpoint_url", "is empty with checkpoint_storage='postgres'", "give a PostgreSQL URL")
    pool = ConnectionPool(
        url,
        min_size=1,
        max_size=16,
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
        open=False,
    )
    try:
        pool.open(wait=True, timeout=15)
    except Exception as exc:
        raise ServiceError(
            f"checkpoint_url: PostgreSQL at {url} does not answer ({exc}). Fix: start PostgreSQL or correct the URL"
        ) from exc
    saver = PostgresSaver(pool)
    saver.setup()
    return saver


@dataclass(frozen=True)
class Checkpoint:
    """One LangGraph checkpoint of an execution.

    ``nodes`` are the nodes whose writes produced it (empty for the input
    checkpoint, a fork made by a rollback, or a ``manual`` checkpoint that
    covers several supersteps); ``next`` the nodes a resume from it runs.
    """

    checkpoint_id: str
    execution_id: str
    parent_id: str | None
    step: int
    source: str
    nodes: tuple[str, ...]
    next: tuple[str, ...]
    created_at: datetime | None
    values: Any

    @property
    def config(self) -> dict[str, Any]:
        """The LangGraph config that addresses this checkpoint."""
        return {
            "configurable": {"thread_id": self.execution_id, "checkpoint_ns": "", "checkpoint_id": self.checkpoint_id}
        }


def _thread(execution_id: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": execution_id}}


def list_checkpoints(graph: Any, execution_id: str) -> list[Checkpoint]:
    """Every checkpoint of an execution's thread, newest first."""
    snapshots = list(graph.get_state_history(_thread(execution_id)))
    by_id = {s.config["configurable"]["checkpoint_id"]: s for s in snapshots}
    result = []
    for snap in snapshots:
        parent_id = (snap.parent_config or {}).get("configurable", {}).get("checkpoint_id")
        parent = by_id.get(parent_id) if parent_id else None
        step = snap.metadata.get("step", -1) if snap.metadata else -1
        source = snap.metadata.get("source", "") if snap.metadata else ""
        nodes: tuple[str, ...] = ()
        if source == "loop" and parent is not None and parent.metadata.get("step", -2) == step - 1:
            nodes = tuple(t.name for t in parent.tasks if not t.name.startswith("__"))
        result.append(
            Checkpoint(
                checkpoint_id=snap.config["configurable"]["checkpoint_id"],
                execution_id=execution_id,
                parent_id=parent_id,
                step=step,
                source=source,
                nodes=nodes,
                next=tuple(snap.next),
                created_at=datetime.fromisoformat(snap.created_at) if snap.created_at else None,
                values=snap.values,
            )
        )
    return result


def find_checkpoint(graph: Any, execution_id: str, checkpoint_id: str) -> Any:
    """The LangGraph ``StateSnapshot`` of one checkpoint of the execution.

    Raises:
        UnknownCheckpointError: the execution has no checkpoint of that id.
    """
    config = {"configurable": {"thread_id": execution_id, "checkpoint_ns": "", "checkpoint_id": checkpoint_id}}
    if not checkpoint_id or graph.checkpointer.get_tuple(config) is None:
        raise UnknownCheckpointError(
            f"execution {execution_id!r} has no checkpoint {checkpoint_id!r}. "
            "Fix: pick one of wtb.get_checkpoints(execution_id)"
        )
    return graph.get_state(config)


def rewind(graph: Any, execution_id: str, checkpoint_id: str) -> str:
    """Make a copy of checkpoint ``checkpoint_id`` the execution's latest one
    (LangGraph's fork, ``update_state(..., as_node="__copy__")``), so that the
    next ``invoke(None)`` on the thread runs again from there. Returns the new
    checkpoint id.
    """
    snapshot = find_checkpoint(graph, execution_id, checkpoint_id)
    new_config = graph.update_state(snapshot.config, None, as_node="__copy__")
    return new_config["configurable"]["checkpoint_id"]
