"""LangGraph's ``SqliteSaver`` with the writes of concurrent executions committed together.

``SqliteSaver`` shares one connection behind one lock: each checkpoint (and
each node's pending writes) takes the lock, executes, commits and lets go.
With a batch's executions in threads of one process, the holder of that lock
also needs the GIL back after every SQLite call (the ``sqlite3`` module
releases it around each one), so under load each hold stretches and every
other execution's checkpoint queues behind it.

:class:`GroupCommitSqliteSaver` keeps ``SqliteSaver``'s own SQL: its write
methods run unchanged against a cursor that records their statements, and one
writer thread executes whatever statements are waiting, from every thread, in
one transaction. A write returns when the transaction holding it committed,
as before (``per_node`` durability is unchanged); if that transaction fails,
each waiting write is retried in its own, so each gets its own outcome
(a full disk raises in the write that hit it). Reads take the lock as before.
"""

from __future__ import annotations

import contextlib
import queue
import sqlite3
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

from langgraph.checkpoint.sqlite import SqliteSaver

__all__ = ["GroupCommitSqliteSaver"]

Statement = tuple[bool, str, Any]
"""(many, sql, parameters): an ``execute`` or ``executemany`` call."""


class _RecordingCursor:
    """What ``SqliteSaver``'s write methods call on a cursor, recorded instead of executed."""

    def __init__(self) -> None:
        self.statements: list[Statement] = []

    def execute(self, sql: str, parameters: Any = ()) -> _RecordingCursor:
        self.statements.append((False, sql, parameters))
        return self

    def executemany(self, sql: str, rows: Any) -> _RecordingCursor:
        self.statements.append((True, sql, list(rows)))
        return self


class GroupCommitSqliteSaver(SqliteSaver):
    """``SqliteSaver`` whose writes (``put``, ``put_writes``, ``delete_thread``) are group-committed.

    Example:
        ```python
        import sqlite3
        from wtb_prefect.run.sqlite_saver import GroupCommitSqliteSaver

        saver = GroupCommitSqliteSaver(sqlite3.connect("checkpoints.sqlite", check_same_thread=False))
        graph = builder.compile(checkpointer=saver)
        ```
    """

    def __init__(self, conn: sqlite3.Connection, **kwargs: Any) -> None:
        super().__init__(conn, **kwargs)
        self._pending: queue.SimpleQueue[tuple[list[Statement], Future[None]]] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write_loop, name="wtb-checkpoint-writer", daemon=True)
        self._writer.start()

    @contextlib.contextmanager
    def cursor(self, transaction: bool = True) -> Iterator[Any]:
        """A locked cursor for reads; for writes, a cursor whose statements are committed with others' on exit."""
        if not transaction:
            with super().cursor(transaction=False) as cur:
                yield cur
            return
        recorder = _RecordingCursor()
        yield recorder
        if recorder.statements:
            done: Future[None] = Future()
            self._pending.put((recorder.statements, done))
            done.result()  # raises what the write raised

    def _write_loop(self) -> None:
        while True:
            group = [self._pending.get()]
            with contextlib.suppress(queue.Empty):
                while True:
                    group.append(self._pending.get_nowait())
            try:
                self._write(group)
            except BaseException as exc:  # never leave a writer waiting (setup failed, interpreter ending)
                for _, done in group:
                    if not done.done():
                        done.set_exception(exc)

    def _write(self, group: list[tuple[list[Statement], Future[None]]]) -> None:
        with self.lock:
            self.setup()
            try:
                self._commit([statements for statements, _ in group])
            except Exception:
                if len(group) == 1:
                    raise
                for statements, done in group:  # each alone: its own outcome
                    try:
                        self._commit([statements])
                    except Exception as exc:
                        done.set_exception(exc)
                    else:
                        done.set_result(None)
                return
        for _, done in group:
            done.set_result(None)

    def _commit(self, groups: list[list[Statement]]) -> None:
        # with self.lock held
        cur = self.conn.cursor()
        try:
            for statements in groups:
                for many, sql, parameters in statements:
                    (cur.executemany if many else cur.execute)(sql, parameters)
            self.conn.commit()
        except BaseException:
            self.conn.rollback()
            raise
        finally:
            cur.close()
