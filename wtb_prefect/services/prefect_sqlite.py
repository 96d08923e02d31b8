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

Both reach into internals (Prefect's server database configuration,
SQLAlchemy's insert statement): :func:`check_patch_targets` says what moved
when a release changes them (see :mod:`wtb_prefect.private_api`).
"""

from __future__ import annotations

import inspect
from typing import Any

from wtb_prefect.private_api import PrivateAPIChanged, private_name

__all__ = ["check_patch_targets", "executemany_inserts", "immediate_write_transactions"]

_INSERT_ATTRIBUTES = ("_multi_values", "_returning", "_values", "_select_names", "_clone")


def _sqlite_configuration() -> Any:
    configuration = private_name("prefect", "prefect.server.database.configurations", "AioSqliteConfiguration")
    begin = getattr(configuration, "begin_transaction", None)
    if begin is None or "with_for_update" not in inspect.signature(begin).parameters:
        raise PrivateAPIChanged(
            "prefect",
            "AioSqliteConfiguration.begin_transaction(session, with_for_update) changed",
            f"it is {begin!r}" if begin is None else f"its signature is {inspect.signature(begin)}",
        )
    return configuration


def check_patch_targets() -> None:
    """Check that what the two patches change is still there, in the shape they expect.

    Raises:
        PrivateAPIChanged: Prefect's SQLite configuration or SQLAlchemy's multi-row insert changed.
    """
    _sqlite_configuration()
    import sqlalchemy
    from sqlalchemy.dialects.sqlite import insert

    statement = insert(sqlalchemy.table("t", sqlalchemy.column("a"))).values([{"a": 1}, {"a": 2}])
    missing = [name for name in _INSERT_ATTRIBUTES if not hasattr(statement, name)]
    if missing or len(statement._multi_values) != 1 or len(statement._multi_values[0]) != 2:
        raise PrivateAPIChanged(
            "sqlalchemy",
            "a multi-row sqlite Insert no longer keeps its rows in _multi_values[0]",
            f"missing {missing}" if missing else f"_multi_values is {statement._multi_values!r}",
        )


def immediate_write_transactions() -> None:
    """Make every SQLite write transaction of this Prefect server process ``BEGIN IMMEDIATE``."""
    AioSqliteConfiguration = _sqlite_configuration()

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
