"""The persistent index of executions and batches (SQLite in the WTB state folder).

LangGraph's checkpointer keeps each execution's *state*; this index keeps what
is needed to find and continue an execution from any process: its project,
variant choice and test case, its batch, its status, the process that runs it,
a pending control request (pause, checkpoint) and, once it ends, its pickled
:class:`~wtb_prefect.results.ExecutionResult`. It lives at
``$WTB_HOME/executions.sqlite`` (WAL mode, so several processes may write).
"""

from __future__ import annotations

import json
import os
import pickle
import socket
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from wtb_prefect.results import ExecutionResult

__all__ = [
    "BatchRecord",
    "ExecutionIndex",
    "ExecutionRecord",
    "UnrecordedFlowRun",
    "open_index",
    "process_alive",
    "storage_failure",
]

IndexStatus = Literal["pending", "running", "paused", "completed", "failed", "interrupted"]
FINISHED = ("completed", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    batch_id TEXT PRIMARY KEY,
    project TEXT NOT NULL,
    variant_matrix TEXT NOT NULL,
    test_cases BLOB NOT NULL,
    parallelism INTEGER,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS executions (
    execution_id TEXT PRIMARY KEY,
    project TEXT NOT NULL,
    batch_id TEXT,
    position INTEGER NOT NULL DEFAULT 0,
    variant TEXT NOT NULL,
    variant_label TEXT NOT NULL,
    case_id TEXT NOT NULL,
    test_case BLOB NOT NULL,
    status TEXT NOT NULL,
    owner_host TEXT,
    owner_pid INTEGER,
    flow_run_id TEXT,
    request TEXT,
    checkpoint_id TEXT,
    error TEXT,
    result BLOB,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS executions_batch ON executions(batch_id, position);
CREATE INDEX IF NOT EXISTS executions_project ON executions(project, created_at);
CREATE TABLE IF NOT EXISTS unrecorded_flow_runs (
    batch_id TEXT NOT NULL,
    flow_run_id TEXT NOT NULL,
    state TEXT NOT NULL,
    message TEXT NOT NULL,
    events BLOB NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (batch_id, flow_run_id)
);
"""


_STORAGE_MESSAGES = ("database or disk is full", "disk i/o error", "no space left on device", "disk quota exceeded")


def storage_failure(exc: BaseException) -> str | None:
    """What says that ``exc`` (or its cause) is the state storage being full or failing, or None."""
    import errno

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            return str(current)
        if type(current).__name__ == "DiskFull" or any(m in str(current).lower() for m in _STORAGE_MESSAGES):
            if isinstance(current, (sqlite3.Error, OSError)) or type(current).__module__.startswith("psycopg"):
                return f"{type(current).__name__}: {current}"
        current = current.__cause__ or current.__context__
    return None


def process_alive(host: str | None, pid: int | None) -> bool:
    """Whether the process ``pid`` on ``host`` may still be running.

    A process on another host cannot be checked from here and counts as alive.
    """
    if pid is None:
        return False
    if host and host != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (killed, not yet reaped by its parent) is dead for our purpose
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


@dataclass(frozen=True)
class ExecutionRecord:
    """What the index knows about one execution.

    ``status`` is ``interrupted`` when the index says ``running`` but the
    process that ran it is gone (it was killed); such an execution is resumed
    from its last checkpoint by ``WTBTestBench.resume`` or a batch resume.
    """

    execution_id: str
    project: str
    batch_id: str | None
    position: int
    variant: dict[str, str]
    variant_label: str
    case_id: str
    test_case: dict[str, Any]
    status: IndexStatus
    owner_pid: int | None
    checkpoint_id: str | None
    error: str | None
    created_at: float
    updated_at: float
    flow_run_id: str | None = None
    """The Prefect flow run that last ran (or runs) the execution."""

    @property
    def finished(self) -> bool:
        """True once the execution completed or failed."""
        return self.status in FINISHED


@dataclass(frozen=True)
class BatchRecord:
    """What the index knows about one batch: enough to run it again."""

    batch_id: str
    project: str
    variant_matrix: list[dict[str, str]]
    test_cases: list[dict[str, Any]]
    parallelism: int | None
    created_at: float


@dataclass(frozen=True)
class UnrecordedFlowRun:
    """A flow run whose end the Prefect API missed (it was unreachable), kept for reconciliation."""

    batch_id: str
    flow_run_id: str
    state: str
    """The Prefect state type to record (``COMPLETED`` or ``CRASHED``)."""
    message: str
    events: list[str]
    """Task-run events (JSON) the API never confirmed."""


class ExecutionIndex:
    """Thread- and process-safe access to the index file (one connection per thread)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._active: set[str] = set()
        """Executions this process runs now (a record of this process marked running but not
        in here was left by a run that stopped: it reads as interrupted)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._conn() as conn:
            conn.executescript(_SCHEMA)
            columns = {row["name"] for row in conn.execute("PRAGMA table_info(executions)")}
            if "flow_run_id" not in columns:  # an index written by an earlier version
                conn.execute("ALTER TABLE executions ADD COLUMN flow_run_id TEXT")

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(str(self.path), timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA synchronous=NORMAL")  # WAL: durable against process crashes
            conn.row_factory = sqlite3.Row
            self._local.conn = conn
        return conn

    # ─── writing ───

    def add_batch(
        self,
        batch_id: str,
        project: str,
        variant_matrix: Sequence[Mapping[str, str]],
        test_cases: Sequence[Mapping[str, Any]],
        parallelism: int | None,
    ) -> None:
        """Record a batch's inputs (kept as given the first time)."""
        self._conn().execute(
            "INSERT OR IGNORE INTO batches VALUES (?,?,?,?,?,?)",
            (
                batch_id,
                project,
                json.dumps([dict(m) for m in variant_matrix]),
                pickle.dumps([dict(c) for c in test_cases]),
                parallelism,
                time.time(),
            ),
        )

    def add_executions(self, rows: Iterable[dict[str, Any]]) -> None:
        """Record executions as ``pending`` (those already known keep their status)."""
        now = time.time()
        self._conn().executemany(
            "INSERT OR IGNORE INTO executions (execution_id, project, batch_id, position, variant, variant_label,"
            " case_id, test_case, status, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,'pending',?,?)",
            [
                (
                    r["execution_id"],
                    r["project"],
                    r["batch_id"],
                    r["position"],
                    json.dumps(r["variant"]),
                    r["variant_label"],
                    r["case_id"],
                    pickle.dumps(dict(r["test_case"])),
                    now,
                    now,
                )
                for r in rows
            ],
        )

    def mark_running(self, execution_id: str, flow_run_id: str | None = None) -> None:
        """This process (in Prefect flow run ``flow_run_id``) runs the execution from now on."""
        self._active.add(execution_id)
        self._conn().execute(
            "UPDATE executions SET status='running', owner_host=?, owner_pid=?, flow_run_id=?, error=NULL,"
            " updated_at=? WHERE execution_id=?",
            (socket.gethostname(), os.getpid(), flow_run_id, time.time(), execution_id),
        )

    def release(self, execution_id: str) -> None:
        """This process no longer runs the execution (whatever the index could store about it)."""
        self._active.discard(execution_id)

    def finish(self, result: ExecutionResult) -> None:
        """Store an execution's result and final status (completed, failed or paused)."""
        blob = _pickle_result(result)
        self._conn().execute(
            "UPDATE executions SET status=?, checkpoint_id=?, error=?, result=?, request=NULL, updated_at=?"
            " WHERE execution_id=?",
            (
                result.status,
                result.provenance.get("checkpoint_id"),
                str(result.error) if result.error else None,
                blob,
                time.time(),
                result.execution_id,
            ),
        )

    def set_status(self, execution_id: str, status: str, checkpoint_id: str | None = None) -> None:
        """Set an execution's status (e.g. ``paused`` after a rollback)."""
        self._conn().execute(
            "UPDATE executions SET status=?, checkpoint_id=COALESCE(?, checkpoint_id), updated_at=?"
            " WHERE execution_id=?",
            (status, checkpoint_id, time.time(), execution_id),
        )

    def set_request(self, execution_id: str, request: str | None) -> None:
        """Ask the process running the execution to ``pause`` or ``checkpoint`` (None clears)."""
        self._conn().execute("UPDATE executions SET request=? WHERE execution_id=?", (request, execution_id))

    def add_unrecorded(self, run: UnrecordedFlowRun) -> None:
        """Keep what the Prefect API missed of a flow run until it is reconciled."""
        self._conn().execute(
            "INSERT OR REPLACE INTO unrecorded_flow_runs VALUES (?,?,?,?,?,?)",
            (run.batch_id, run.flow_run_id, run.state, run.message, json.dumps(run.events), time.time()),
        )

    def clear_unrecorded(self, batch_id: str, flow_run_id: str) -> None:
        """Forget a flow run once the Prefect API has recorded it."""
        self._conn().execute(
            "DELETE FROM unrecorded_flow_runs WHERE batch_id=? AND flow_run_id=?", (batch_id, flow_run_id)
        )

    # ─── reading ───

    def unrecorded(self, batch_id: str) -> list[UnrecordedFlowRun]:
        """The flow runs of a batch whose end the Prefect API has not recorded yet."""
        rows = (
            self._conn()
            .execute("SELECT * FROM unrecorded_flow_runs WHERE batch_id=? ORDER BY created_at", (batch_id,))
            .fetchall()
        )
        return [
            UnrecordedFlowRun(r["batch_id"], r["flow_run_id"], r["state"], r["message"], json.loads(r["events"]))
            for r in rows
        ]

    def get(self, execution_id: str) -> ExecutionRecord | None:
        """The record of one execution, or None."""
        row = self._conn().execute("SELECT * FROM executions WHERE execution_id=?", (execution_id,)).fetchone()
        return None if row is None else self._record(row)

    def requests(self, execution_ids: Sequence[str]) -> dict[str, str]:
        """Pending control requests of the given executions."""
        if not execution_ids:
            return {}
        marks = ",".join("?" * len(execution_ids))
        rows = (
            self._conn()
            .execute(
                f"SELECT execution_id, request FROM executions WHERE request IS NOT NULL AND execution_id IN ({marks})",
                list(execution_ids),
            )
            .fetchall()
        )
        return {r["execution_id"]: r["request"] for r in rows}

    def result(self, execution_id: str) -> ExecutionResult | None:
        """The stored result of an execution's last run, or None."""
        row = self._conn().execute("SELECT result FROM executions WHERE execution_id=?", (execution_id,)).fetchone()
        return None if row is None or row["result"] is None else pickle.loads(row["result"])

    def list(
        self, project: str | None = None, batch_id: str | None = None, status: str | None = None
    ) -> list[ExecutionRecord]:
        """Executions, oldest first, filtered by project, batch and (derived) status."""
        sql, args = "SELECT * FROM executions WHERE 1=1", []
        if project is not None:
            sql, args = sql + " AND project=?", [*args, project]
        if batch_id is not None:
            sql, args = sql + " AND batch_id=?", [*args, batch_id]
        records = [self._record(r) for r in self._conn().execute(sql + " ORDER BY created_at, position", args)]
        return [r for r in records if status is None or r.status == status]

    def batch(self, batch_id: str) -> BatchRecord | None:
        """A batch's inputs, or None."""
        row = self._conn().execute("SELECT * FROM batches WHERE batch_id=?", (batch_id,)).fetchone()
        if row is None:
            return None
        return BatchRecord(
            row["batch_id"],
            row["project"],
            json.loads(row["variant_matrix"]),
            pickle.loads(row["test_cases"]),
            row["parallelism"],
            row["created_at"],
        )

    def batches(self, project: str | None = None) -> list[BatchRecord]:
        """Batches, oldest first."""
        sql, args = "SELECT batch_id FROM batches", []
        if project is not None:
            sql, args = sql + " WHERE project=?", [project]
        ids = [r["batch_id"] for r in self._conn().execute(sql + " ORDER BY created_at", args)]
        return [b for b in (self.batch(i) for i in ids) if b is not None]

    def _record(self, row: sqlite3.Row) -> ExecutionRecord:
        record = _record(row)
        if (
            record.status == "running"
            and row["owner_pid"] == os.getpid()
            and row["owner_host"] == socket.gethostname()
            and record.execution_id not in self._active
        ):
            return replace(record, status="interrupted")  # its run in this process stopped without a word
        return record


def _record(row: sqlite3.Row) -> ExecutionRecord:
    status = row["status"]
    if status == "running" and not process_alive(row["owner_host"], row["owner_pid"]):
        status = "interrupted"
    return ExecutionRecord(
        execution_id=row["execution_id"],
        project=row["project"],
        batch_id=row["batch_id"],
        position=row["position"],
        variant=json.loads(row["variant"]),
        variant_label=row["variant_label"],
        case_id=row["case_id"],
        test_case=pickle.loads(row["test_case"]),
        status=status,
        owner_pid=row["owner_pid"],
        checkpoint_id=row["checkpoint_id"],
        error=row["error"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        flow_run_id=row["flow_run_id"],
    )


def _pickle_result(result: ExecutionResult) -> bytes:
    try:
        return pickle.dumps(result)
    except Exception:  # an unpicklable value in the state or a node output: keep the rest
        nodes = [replace(n, output=repr(n.output)) for n in result.nodes]
        return pickle.dumps(replace(result, final_state=repr(result.final_state), nodes=nodes))


_indexes: dict[Path, ExecutionIndex] = {}
_lock = threading.Lock()


def open_index(state_dir: Path) -> ExecutionIndex:
    """The execution index of a WTB state folder (one object per folder and process)."""
    path = (state_dir / "executions.sqlite").resolve()
    with _lock:
        index = _indexes.get(path)
        if index is None:
            index = _indexes[path] = ExecutionIndex(path)
        return index
