"""The embedded server's SQLite is not "locked" by a Prefect worker's heartbeats during a batch.

A Prefect worker (the deployments' ``prefect worker start``) heartbeats while
a batch's task runs are recorded; each heartbeat reads its work pool and then
writes, which SQLite refused with "database is locked" whenever the task-run
recorder committed in between.
"""

from __future__ import annotations

import contextvars
import threading
import uuid

from tests.graphs import marked_steps
from tests.test_control import _name, _state

EXECUTIONS = 125  # x 4 nodes = 500 task runs


def test_500_task_batch_with_worker_heartbeats_leaves_no_database_locked_error(bench, prefect_server_log, tmp_path):
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate

    server_log = prefect_server_log
    offset = server_log.stat().st_size
    pool = f"wtb-heartbeats-{uuid.uuid4().hex[:6]}"
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
    stop = threading.Event()
    beats: dict[str, object] = {"sent": 0, "errors": []}

    def heartbeats() -> None:  # a worker heartbeating far more often than Prefect's default
        with get_client(sync_client=True) as client:
            while not stop.wait(0.1):
                try:
                    client.send_worker_heartbeat(pool, "wtb-test-worker", heartbeat_interval_seconds=1)
                    beats["sent"] += 1  # type: ignore[operator]
                except Exception as exc:  # surfaced below
                    beats["errors"].append(repr(exc))  # type: ignore[union-attr]

    name = _name("sqlite_locks")
    bench.register_project(marked_steps.make_project(name, "sqlite"))
    # the thread talks to the session's server: it runs in a copy of this context (Prefect's settings)
    worker = threading.Thread(target=contextvars.copy_context().run, args=(heartbeats,), daemon=True)
    worker.start()
    try:
        batch = bench.run_batch_test(name, [{}], [_state(tmp_path, x=x) for x in range(EXECUTIONS)], parallelism=8)
    finally:
        stop.set()
        worker.join(30)
    assert [r.status for r in batch] == ["completed"] * EXECUTIONS
    assert sum(len(r.nodes) for r in batch) == 4 * EXECUTIONS
    assert beats["sent"] and not beats["errors"], beats["errors"][:3]
    written = server_log.read_text(errors="replace")[offset:]
    assert "database is locked" not in written, written[written.find("database is locked") - 3000 :][:4000]
