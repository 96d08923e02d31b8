"""The disk of the state folder fills up in the middle of a batch.

The driver subprocess keeps its state folder (execution index, SQLite
checkpoints) on a small tmpfs; the test fills it when two executions are
recorded as completed. Where ``mount`` is not allowed, the driver's file-size limit is
lowered instead (its writes that extend a file then fail, as on a full disk).
The batch must end with a typed error, and after space is freed a resume in
the same process must finish every execution from consistent checkpoints.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tests.graphs import marked_steps
from tests.support.drivers import driver_env, read_outcome, start_driver, wait_exit
from tests.test_control import _name, _state, wait_for

HANG_GUARD_S = 600
CASES = 6

DRIVER = """
import json, time
from pathlib import Path
from tests.graphs import marked_steps
from wtb_prefect import WTBTestBench
from wtb_prefect.errors import StateStorageError

bench = WTBTestBench()
bench.register_project(marked_steps.make_project({name!r}, "sqlite"))
try:
    batch = bench.run_batch_test({name!r}, [{{}}], {cases!r}, parallelism=2)
    out = {{"outcome": "completed", "batch_id": batch.batch_id}}
except StateStorageError as exc:
    # what the user who got the error sees of the batch's executions
    statuses = {{r.execution_id: r.status for r in bench.list_executions(batch_id=exc.batch_id)}}
    out = {{"outcome": type(exc).__name__, "message": str(exc), "batch_id": exc.batch_id, "statuses": statuses}}
print("OUTCOME " + json.dumps(out), flush=True)
gate, deadline = Path({gate!r}), time.monotonic() + 600
while not gate.exists():  # the test frees space, then opens the gate
    if time.monotonic() > deadline:
        raise SystemExit(f"waited 600 s for the test to open the gate {{gate}}")
    time.sleep(0.1)
batch = bench.run_batch_test({name!r}, resume=out["batch_id"])
rows = [[r.case_id, r.status, r.execution_id, r.started_at, r.final_state["x"], r.final_state["log"]] for r in batch]
print("RESUMED " + json.dumps(rows), flush=True)
"""


@contextlib.contextmanager
def small_disk(path: Path) -> Iterator[bool]:
    """A small tmpfs at ``path``; yields False (and a plain folder) where mounting is not allowed."""
    path.mkdir()
    mounted = (
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(path)], capture_output=True).returncode
        == 0
    )
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], check=False)


def _fill(path: Path) -> int:
    """Write a file into ``path`` until its disk is full; the bytes written."""
    written = 0
    chunk = b"\0" * (256 * 1024)
    with open(path / "filler", "wb", buffering=0) as fh:
        while True:
            try:
                written += fh.write(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                return written


def _completed_in_index(state: Path) -> int:
    """How many executions the state folder's index records as completed (0 before it exists)."""
    from wtb_prefect.run.execution_index import open_index

    if not (state / "executions.sqlite").exists():
        return 0
    return len(open_index(state.resolve()).list(status="completed"))


def _resumed(log: Path) -> list | None:
    import json

    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("RESUMED "):
            return json.loads(line[len("RESUMED ") :])
    return None


def test_state_disk_full_mid_batch_ends_clearly_and_resumes_consistently(ray_cluster, tmp_path):
    from wtb_prefect.run.execution_index import open_index

    name = _name("full_disk")
    marker, state, gate = tmp_path / "markers", tmp_path / "state", tmp_path / "gate"
    marker.mkdir()
    cases = [_state(marker, x=x, slow_node="b", sleep=1.0) for x in range(CASES)]
    log = tmp_path / "driver.log"
    with small_disk(state) as mounted:
        env = driver_env(state, WTB_MLFLOW_ENABLED="false")
        driver = start_driver(DRIVER.format(name=name, cases=cases, gate=str(gate)), env, log)
        try:
            # finished = recorded as completed in the index, not only past their last node
            # (an execution's record is written just after its last node's marker)
            wait_for(
                lambda: _completed_in_index(state) >= 2 or driver.poll() is not None,
                timeout=HANG_GUARD_S,
                what="two executions to finish",
            )
            assert driver.poll() is None, log.read_text()[-3000:]
            if mounted:
                assert _fill(state) > 0
            else:  # no mount here: every write that extends a file of the driver fails from now on
                limit = max(p.stat().st_size for p in state.rglob("*") if p.is_file())
                resource.prlimit(driver.pid, resource.RLIMIT_FSIZE, (limit, limit))
            outcome = wait_for(lambda: read_outcome(log), timeout=HANG_GUARD_S, what="the batch's outcome")
            assert outcome["outcome"] == "StateStorageError", log.read_text()[-3000:]
            batch_id = outcome["batch_id"]
            assert f"resume={batch_id!r}" in outcome["message"] and "full" in outcome["message"]

            # what the index and the checkpoints hold is consistent: finished ones have their result
            index = open_index(state.resolve())
            records = index.list(batch_id=batch_id)
            assert len(records) == CASES
            statuses = {r.execution_id: r.status for r in records}
            # as the docs say, executions that could not write are interrupted: the driver that got the
            # error reads them so; the index, which it could not write, still says "running" to other
            # processes while the driver lives (and "interrupted" once it exits)
            seen_by_driver = outcome["statuses"]
            assert set(seen_by_driver.values()) <= {"completed", "interrupted", "pending"}, seen_by_driver
            assert seen_by_driver == {e: "interrupted" if s == "running" else s for e, s in statuses.items()}
            completed_before = {e for e, s in statuses.items() if s == "completed"}
            assert len(completed_before) >= 2
            started_before = {e: index.result(e).started_at for e in completed_before}

            # space again: a resume in the same process finishes the batch from there
            if mounted:
                (state / "filler").unlink()
            else:
                resource.prlimit(driver.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY,) * 2)
            gate.touch()
            rows = wait_for(lambda: _resumed(log), timeout=HANG_GUARD_S, what="the resume")
            wait_exit(driver, 60)
        finally:
            if driver.poll() is None:
                os.killpg(driver.pid, signal.SIGKILL)
    assert [row[0] for row in rows] == [str(x) for x in range(CASES)]  # every case once
    for x, (_, status, execution_id, started_at, final_x, final_log) in enumerate(rows):
        assert status == "completed"
        assert {"x": final_x, "log": final_log} == marked_steps.expected_final(x)
        if execution_id in completed_before:
            assert started_at == started_before[execution_id]  # not run again
