"""The Prefect API is the record of a batch, not a dependency of its work.

The test starts a Prefect server of its own (the session's stays untouched),
kills it in the middle of a batch run by a driver subprocess, and checks that
the batch goes on, ends with a typed error naming the batch, that every
finished execution is in the execution index, and that the driver process
exits; then that a resume with the server back records what it missed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time

from tests.support.drivers import driver_env, finished_executions, read_outcome, start_driver, wait_exit
from tests.test_control import _name, wait_for
from wtb_prefect.run.execution_index import open_index
from wtb_prefect.services.prefect_server import PrefectServer
from wtb_prefect.settings import WTBSettings

CASES = 8
HANG_GUARD_S = 600  # far above any bounded wait; only stops a hung test

DRIVER = """
import json, time
from tests.graphs import marked_steps
from wtb_prefect import WTBTestBench
from wtb_prefect.errors import PrefectAPIUnavailableError

bench = WTBTestBench()
bench.register_project(marked_steps.make_project({name!r}, "sqlite"))
cases = [{{"x": i, "log": [], "marker_dir": {marker!r}, "slow_node": "b", "sleep": 1.0}} for i in range({cases})]
try:
    batch = bench.run_batch_test({name!r}, [{{}}], cases, parallelism=2)
    out = {{"outcome": "completed", "batch_id": batch.batch_id}}
except PrefectAPIUnavailableError as exc:
    out = {{"outcome": type(exc).__name__, "message": str(exc), "batch_id": exc.batch_id,
           "kept": sorted(r.execution_id for r in exc.batch.results), "held_events": exc.held_events}}
out["at"] = time.time()
print("OUTCOME " + json.dumps(out), flush=True)
"""

RESUME = """
import json, time, uuid
from tests.graphs import marked_steps
from prefect import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from wtb_prefect import WTBTestBench

bench = WTBTestBench()
bench.register_project(marked_steps.make_project({name!r}, "sqlite"))
batch = bench.run_batch_test({name!r}, resume={batch_id!r})
old = uuid.UUID({flow_run_id!r})
with get_client(sync_client=True) as client:
    deadline = time.monotonic() + 120
    while True:  # the server's task-run recorder works through the events in the background
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[old])))
        states = sorted(r.state.type.value for r in runs if r.state)
        if states.count("COMPLETED") >= {nodes} or time.monotonic() > deadline:
            break
        time.sleep(1)
    flow_state = client.read_flow_run(old).state.type.value
out = {{"statuses": [r.status for r in batch], "flow_state": flow_state, "task_run_states": states}}
print("OUTCOME " + json.dumps(out), flush=True)
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_prefect_server_killed_mid_batch_batch_goes_on_and_resume_records_it(ray_cluster, tmp_path):
    name = _name("api_outage")
    home, marker = tmp_path / "home", tmp_path / "markers"
    marker.mkdir()
    server = PrefectServer(WTBSettings(home=home))
    info = server.start(port=_free_port(), timeout=300)
    log = tmp_path / "driver.log"
    driver = start_driver(
        DRIVER.format(name=name, marker=str(marker), cases=CASES),
        driver_env(home, info.url, WTB_MLFLOW_ENABLED="false"),
        log,
    )
    try:
        wait_for(lambda: len(finished_executions(marker)) >= 2, timeout=HANG_GUARD_S, what="two executions to finish")
        os.killpg(info.pid, signal.SIGKILL)  # the server (and its process group) is gone at once
        killed_at = time.time()
        outcome = wait_for(lambda: read_outcome(log), timeout=HANG_GUARD_S, what="the batch's outcome")
        exited_at = wait_exit(driver, HANG_GUARD_S)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
        server.stop()
    output = log.read_text(errors="replace")
    assert exited_at is not None, "the driver did not exit:\n" + output[-3000:]
    assert driver.returncode == 0, output[-3000:]
    assert outcome["outcome"] == "PrefectAPIUnavailableError", output[-3000:]
    batch_id = outcome["batch_id"]
    assert f"resume={batch_id!r}" in outcome["message"] and "execution index" in outcome["message"]

    # the executions went on without the API, and every one that finished is in the index
    finished = finished_executions(marker)
    index = open_index(home.resolve())
    records = index.list(batch_id=batch_id)
    assert len(records) == CASES
    assert {r.execution_id for r in records if r.status == "completed"} == finished
    assert sorted(finished) == outcome["kept"]
    assert len(finished) == CASES  # the kill stopped none of them
    (unrecorded,) = index.unrecorded(batch_id)
    assert unrecorded.state == "COMPLETED"
    print(
        f"\nserver killed mid-batch: outcome after {outcome['at'] - killed_at:.1f} s, process exit after "
        f"{exited_at - killed_at:.1f} s, results kept {len(outcome['kept'])} of {len(finished)} finished, "
        f"{outcome['held_events']} task-run events held back"
    )

    # the API is back: resuming the batch records what it missed and runs nothing again
    info = server.start(port=_free_port(), timeout=300)
    try:
        resume_log = tmp_path / "resume.log"
        resume = start_driver(
            RESUME.format(name=name, batch_id=batch_id, flow_run_id=unrecorded.flow_run_id, nodes=4 * CASES),
            driver_env(home, info.url, WTB_MLFLOW_ENABLED="false"),
            resume_log,
        )
        with contextlib.ExitStack() as stack:
            stack.callback(lambda: resume.poll() is None and os.killpg(resume.pid, signal.SIGKILL))
            after = wait_for(lambda: read_outcome(resume_log), timeout=HANG_GUARD_S, what="the resume")
    finally:
        server.stop()
    assert after["statuses"] == ["completed"] * CASES
    assert after["flow_state"] == "COMPLETED"
    assert after["task_run_states"] == ["COMPLETED"] * (4 * CASES), resume_log.read_text()[-3000:]
    assert index.unrecorded(batch_id) == []
    for execution_id in finished:  # nothing ran twice
        assert (marker / f"{execution_id}.runs").read_text().split() == ["a", "b", "c", "d"]
