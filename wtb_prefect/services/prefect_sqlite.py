"""How the embedded Prefect server writes to SQLite: transactions that wait for the lock, cached INSERTs.

Prefect opens most write transactions on SQLite as ``BEGIN DEFERRED``. A
deferred transaction that reads before it writes (a Prefect worker's
heartbeat reads its work pool, then upserts the worker) fails at once with
"database is locked" when another connection (the task-run recorder, busy
during a batch) commits in between: SQLite cannot upgrade its stale read
snapshot, and its busy timeout does not apply to that case. Prefect's own
rule (``prefect/server/AGENTS.md``) is to open such transactions as
``BEGIN IMMEDIATE``, which takes the write lock first and waits for it
within the busy timeout. :func:`immediate_write_transactions` applies that
rule to every write transaction of the server; the server's entry point
(:mod:`wtb_prefect.services._server_main`) calls it.

:func:`executemany_inserts` sends the recorders' multi-row INSERTs as one
executemany of a statement SQLAlchemy compiles once (compiling each flush's
statement took much of the server's time; the figures are in the benchmark
docs).
"""

from __future__ import annotations

from typing import Any

__all__ = ["executemany_inserts", "immediate_write_transactions"]


def immediate_write_transactions() -> None:
    """Make every SQLite write transaction of this Prefect server process ``BEGIN IMMEDIATE``."""
    from prefect.server.database.configurations import AioSqliteConfiguration

    original = AioSqliteConfiguration.begin_transaction
    if getattr(original, "_wtb_immediate", False):
        return

    def begin_transaction(self: Any, session: Any, with_for_update: bool = False) -> Any:
        return original(self, session, with_for_update=True)

    begin_transaction._wtb_immediate = True  # type: ignore[attr-defined]
    AioSqliteConfiguration.begin_transaction = begin_transaction  # type: ignore[method-assign]


def executemany_inserts() -> None:
    """Send the server's multi-row ``INSERT ... VALUES (...), (...)`` to SQLite as one executemany.

    Prefect's task-run recorder and event persister write each flush as one
    multi-row ``INSERT`` on SQLite (on PostgreSQL it already uses executemany).
    SQLAlchemy compiles such a statement anew every time, since its text
    depends on the number of rows; the same statement with the rows as
    execution parameters is compiled once and reused. The rows, the statement
    (its ``ON CONFLICT`` clause included) and the transaction are unchanged.
    """
    from sqlalchemy.dialects.sqlite import Insert
    from sqlalchemy.ext.asyncio import AsyncSession
    from sqlalchemy.sql.expression import ClauseElement

    original = AsyncSession.execute
    if getattr(original, "_wtb_executemany", False):
        return

    async def execute(self: Any, statement: Any, params: Any = None, *args: Any, **kwargs: Any) -> Any:
        rows = _multi_rows(statement) if params is None else None
        if rows is not None:
            bare = statement._clone()
            bare._multi_values = ()
            return await original(self, bare.execution_options(dml_strategy="raw"), rows, *args, **kwargs)
        return await original(self, statement, params, *args, **kwargs)

    def _multi_rows(statement: Any) -> list[dict[str, Any]] | None:
        """The rows of a multi-row SQLite ``INSERT`` whose rows all name the same columns and hold
        plain values (an SQL expression cannot be an executemany parameter), else None."""
        if not isinstance(statement, Insert) or len(getattr(statement, "_multi_values", ())) != 1:
            return None
        if statement._returning or statement._values or statement._select_names:
            return None
        rows = statement._multi_values[0]
        if len(rows) < 2 or not all(isinstance(row, dict) for row in rows):
            return None
        keys = rows[0].keys()
        if any(row.keys() != keys for row in rows):
            return None
        if any(isinstance(value, ClauseElement) for row in rows for value in row.values()):
            return None
        # An ORM insert (Prefect's: ``insert(db.TaskRun).values(...)``) holds its rows keyed by
        # the columns themselves; the executemany parameters are keyed by the columns' keys.
        names = [key if isinstance(key, str) else getattr(key, "key", None) for key in keys]
        if not all(isinstance(name, str) for name in names) or len(set(names)) != len(names):
            return None
        return [{name: row[key] for key, name in zip(keys, names, strict=True)} for row in rows]

    execute._wtb_executemany = True  # type: ignore[attr-defined]
    AsyncSession.execute = execute  # type: ignore[method-assign]
