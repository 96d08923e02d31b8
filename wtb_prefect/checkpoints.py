"""LangGraph checkpoint savers for the configured ``checkpoint_storage``."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver

from .config import ExecutionConfig
from .errors import ConfigError, ServiceError

__all__ = ["durability_for", "open_checkpointer"]

_savers: dict[str, BaseCheckpointSaver] = {}
_lock = threading.Lock()

_DURABILITY = {"per_node": "sync", "per_step": "async", "manual": "exit"}


def durability_for(config: ExecutionConfig) -> str:
    """LangGraph's ``durability`` for a ``checkpoint_strategy``.

    * ``per_node``: a checkpoint is written, synchronously, after every step
      (each node's write is durable before the next node starts);
    * ``per_step``: the same checkpoints, written asynchronously while the next
      step runs (faster; the last step may be lost if the process dies);
    * ``manual``: only the final state is written when the run exits.
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
        from langgraph.checkpoint.sqlite import SqliteSaver

        path = Path(config.checkpoint_url) if config.checkpoint_url else state_dir / "checkpoints.sqlite"
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA busy_timeout=30000")
        saver = SqliteSaver(conn)
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
            f"checkpoint_url: PostgreSQL at {url} does not answer ({exc}). "
            "Fix: start PostgreSQL or correct the URL"
        ) from exc
    saver = PostgresSaver(pool)
    saver.setup()
    return saver
