"""The embedded Prefect server's multi-row SQLite INSERTs, sent as one executemany.

Unit tests on a SQLite file through SQLAlchemy's asyncio session (aiosqlite),
as the server writes: the rows stored are those of the multi-row statement,
``ON CONFLICT`` included, and the statement is compiled once for every number
of rows; also for an insert built as Prefect's server builds its own (on one
of its ORM models, whose rows SQLAlchemy keys by column, not by name). That
the server records every task run and state of a real batch is checked by the
integration tests (e.g. ``test_prefect_logs.py``, ``test_sharing.py``).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from prefect.server.database import orm_models
from sqlalchemy.dialects.sqlite import insert
from sqlalchemy.engine.default import DefaultExecutionContext
from sqlalchemy.engine.interfaces import CacheStats
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from wtb_prefect.services.prefect_sqlite import executemany_inserts

metadata = sa.MetaData()
runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("state", sa.String, nullable=False),
    sa.Column("at", sa.Integer, nullable=False),
    sa.Column("note", sa.String),
)


def _upsert(rows: list[dict]) -> sa.Insert:
    """A multi-row upsert shaped like Prefect's task-run recorder's: newer rows win, NULL keeps the old note."""
    statement = insert(runs).values(rows)
    return statement.on_conflict_do_update(
        index_elements=["id"],
        set_={
            "state": statement.excluded.state,
            "at": statement.excluded.at,
            "note": sa.func.coalesce(statement.excluded.note, runs.c.note),
        },
        where=runs.c.at < statement.excluded.at,
    )


FLUSHES = [
    [{"id": 1, "state": "PENDING", "at": 1, "note": "a"}, {"id": 2, "state": "PENDING", "at": 1, "note": "b"}],
    [
        {"id": 1, "state": "RUNNING", "at": 2, "note": None},
        {"id": 2, "state": "STALE", "at": 0, "note": None},
        {"id": 3, "state": "PENDING", "at": 1, "note": "c"},
    ],
    [{"id": 1, "state": "COMPLETED", "at": 3, "note": None}, {"id": 3, "state": "RUNNING", "at": 2, "note": "d"}],
]


def _recording_engine(path: Path) -> tuple[AsyncEngine, list[tuple[CacheStats, int, bool]]]:
    """An engine on a SQLite file, and the list it fills, per INSERT sent: cache outcome, rows, executemany."""
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
    sent: list[tuple[CacheStats, int, bool]] = []

    @sa.event.listens_for(engine.sync_engine, "after_cursor_execute")
    def _seen(conn, cursor, statement, parameters, context: DefaultExecutionContext, executemany: bool) -> None:
        if statement.startswith("INSERT"):
            sent.append((context.cache_hit, len(context.compiled_parameters), executemany))

    return engine, sent


async def _write(path: Path) -> tuple[list[tuple], list[tuple[CacheStats, int, bool]]]:
    """Run the flushes; the table's rows and, per statement sent, its cache outcome and whether it was executemany."""
    engine, sent = _recording_engine(path)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    async with AsyncSession(engine) as session:
        for rows in FLUSHES:
            await session.execute(_upsert(rows))
            await session.commit()
        stored = (await session.execute(sa.select(runs).order_by(runs.c.id))).all()
    await engine.dispose()
    return [tuple(row) for row in stored], sent


@pytest.fixture
def patched_session(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(AsyncSession, "execute", AsyncSession.execute)  # restored after the test
    executemany_inserts()


def test_rows_and_upsert_rules_are_those_of_the_multi_row_insert(tmp_path: Path, patched_session: None) -> None:
    stored, sent = asyncio.run(_write(tmp_path / "patched.sqlite"))
    assert stored == [(1, "COMPLETED", 3, "a"), (2, "PENDING", 1, "b"), (3, "RUNNING", 2, "d")]
    assert [executemany for _, _, executemany in sent] == [True, True, True]
    assert [rows for _, rows, _ in sent] == [len(rows) for rows in FLUSHES]


def test_the_insert_is_compiled_once_for_any_number_of_rows(tmp_path: Path, patched_session: None) -> None:
    _, sent = asyncio.run(_write(tmp_path / "patched.sqlite"))
    assert sent[0][0] == CacheStats.CACHE_MISS
    assert [hit for hit, _, _ in sent[1:]] == [CacheStats.CACHE_HIT, CacheStats.CACHE_HIT]


def test_without_it_each_flush_compiles_a_new_statement(tmp_path: Path) -> None:
    """What the server does without the change: the same rows, no statement reused."""
    stored, sent = asyncio.run(_write(tmp_path / "plain.sqlite"))
    assert stored == [(1, "COMPLETED", 3, "a"), (2, "PENDING", 1, "b"), (3, "RUNNING", 2, "d")]
    assert all(hit != CacheStats.CACHE_HIT and not executemany for hit, _, executemany in sent)


async def _write_task_run_states(
    path: Path, flushes: list[int], created: Any = None
) -> tuple[int, list[tuple[CacheStats, int, bool]]]:
    """Write ``flushes`` (row counts) of task-run states as Prefect's task-run recorder does.

    Prefect inserts on its ORM models (``insert(db.TaskRunState).values([...])``),
    where SQLAlchemy keeps each row keyed by the model's columns rather than by name.
    ``created`` is each row's creation time (None: now, as a value).
    """
    engine, sent = _recording_engine(path)
    table = orm_models.TaskRunState.__table__
    async with engine.begin() as conn:
        await conn.run_sync(lambda sync: orm_models.Base.metadata.create_all(sync, tables=[table]))
    async with AsyncSession(engine) as session:
        for count in flushes:
            now = datetime.now(UTC)
            rows = [
                {
                    "id": uuid.uuid4(),
                    "task_run_id": uuid.uuid4(),
                    "type": "COMPLETED",
                    "name": "Completed",
                    "timestamp": now,
                    "created": now if created is None else created,
                }
                for _ in range(count)
            ]
            statement = insert(orm_models.TaskRunState).values(rows).on_conflict_do_nothing(index_elements=["id"])
            await session.execute(statement)
            await session.commit()
        stored = (await session.execute(sa.select(sa.func.count()).select_from(table))).scalar_one()
    await engine.dispose()
    return stored, sent


def test_prefects_own_orm_inserts_are_sent_as_one_compiled_executemany(tmp_path: Path, patched_session: None) -> None:
    stored, sent = asyncio.run(_write_task_run_states(tmp_path / "orm.sqlite", [2, 3, 5]))
    assert stored == 10
    assert [(rows, executemany) for _, rows, executemany in sent] == [(2, True), (3, True), (5, True)]
    assert [hit for hit, _, _ in sent] == [CacheStats.CACHE_MISS, CacheStats.CACHE_HIT, CacheStats.CACHE_HIT]


def test_rows_holding_an_sql_expression_keep_the_multi_row_insert(tmp_path: Path, patched_session: None) -> None:
    """An SQL expression cannot be an executemany parameter: such a statement is sent as it was built."""
    stored, sent = asyncio.run(_write_task_run_states(tmp_path / "expr.sqlite", [2, 3], created=sa.func.now()))
    assert stored == 5
    assert [(rows, executemany) for _, rows, executemany in sent] == [(1, False), (1, False)]
