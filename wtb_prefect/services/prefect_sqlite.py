"""SQLite write transactions of the embedded Prefect server that wait for the lock.

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
"""

from __future__ import annotations

from typing import Any

__all__ = ["immediate_write_transactions"]


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
