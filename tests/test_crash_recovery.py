"""Nothing is lost when a Ray worker or the driver (flow-run process) is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from tests.graphs import marked_steps
from tests.test_control import REPO, _name, _state, start_in_thread, wait_for


def test_worker_killed_mid_node_is_retried_and_execution_completes(bench, tmp_path):
    name = _name("crash_worker")
    bench.register_project(marked_steps.make_project(name, "sqlite", factory=marked_steps.worker_graph, max_retries=1))
    thread, box = start_in_thread(bench.run, name, _state(tmp_path, sleep=60.0))
    pid_file = wait_for(lambda: next(iter(tmp_path.glob("*.pids")), None), what="the worker to write its pid")
    worker_pid = int(wait_for(lambda: pid_file.read_text().split(), what="pid")[0])
    assert worker_pid != os.getpid()
    os.kill(worker_pid, signal.SIGKILL)
    thread.join(120)
    result = box.get("result")
    assert result is not None, box.get("error")
    assert result.status == "completed", result.error
    pids = [int(p) for p in pid_file.read_text().split()]
    assert len(pids) == 2 and pids[0] == worker_pid and pids[1] != worker_pid
    assert result.final_state["log"] == ["a", "worker"]
    assert marked_steps.counts(tmp_path, result.execution_id) == {"a": 1, "worker": 1}


DRIVER = """
from tests.graphs import marked_steps
from wtb_prefect import WTBTestBench

bench = WTBTestBench()
bench.register_project(marked_steps.make_project({name!r}, {storage!r}))
bench.run_batch_test({name!r}, [{{}}], {cases!r}, parallelism=1)
print("batch finished")
"""


def _flow_run_state(flow_run_id: str) -> str:
    from prefect import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(uuid.UUID(flow_run_id)).state.type.value


@pytest.mark.parametrize("storage", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_killed_driver_batch_resumes_without_rerunning_finished_executions(bench, tmp_path, storage):
    name = _name(f"crash_driver_{storage}")
    project = marked_steps.make_project(name, storage)
    bench.register_project(project)
    gate = tmp_path / "open"  # the second execution's node b holds until the driver is dead
    cases = [_state(tmp_path, x=0), _state(tmp_path, x=1, slow_node="b", gate=str(gate)), _state(tmp_path, x=2)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    log = open(tmp_path / "driver.log", "w")
    driver = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(DRIVER.format(name=name, storage=storage, cases=cases))],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        # the second execution is inside node b (after a's checkpoint): kill the driver there
        wait_for(
            lambda: any("b" in marked_steps.counts(tmp_path, p.stem, "started") for p in tmp_path.glob("*-c1.started")),
            timeout=240,
            what="the driver to reach node b of the second execution",
        )
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(30)
    finally:
        if driver.poll() is None:
            driver.kill()
        log.close()
    assert driver.returncode == -signal.SIGKILL, (tmp_path / "driver.log").read_text()[-3000:]

    (batch_record,) = bench.list_batches(name)
    records = bench.list_executions(batch_id=batch_record.batch_id)
    assert [r.status for r in records] == ["completed", "interrupted", "pending"]
    ids = [r.execution_id for r in records]
    before = bench.get_result(ids[0])
    assert before.status == "completed"
    assert bench.get_checkpoints(ids[1])[0].nodes == ("a",)  # a's write survived the kill

    dead_flow_run = records[1].flow_run_id
    assert dead_flow_run and _flow_run_state(dead_flow_run) == "RUNNING"  # its process could not say otherwise

    gate.touch()  # the resumed b may finish
    batch = bench.run_batch_test(name, resume=batch_record.batch_id)
    assert batch.batch_id == batch_record.batch_id
    assert batch.flow_run_id != dead_flow_run
    assert _flow_run_state(dead_flow_run) == "CRASHED"  # the UI no longer shows the killed driver as running
    assert [r.execution_id for r in batch] == ids
    assert [r.status for r in batch] == ["completed"] * 3
    for i, result in enumerate(batch):
        assert {k: result.final_state[k] for k in ("x", "log")} == marked_steps.expected_final(i)
        assert marked_steps.counts(tmp_path, ids[i]) == {"a": 1, "b": 1, "c": 1, "d": 1}  # each node's run kept once
    assert batch.results[0].started_at == before.started_at  # the finished one was not run again
    assert marked_steps.counts(tmp_path, ids[0], "started") == {"a": 1, "b": 1, "c": 1, "d": 1}
    assert marked_steps.counts(tmp_path, ids[1], "started") == {"a": 1, "b": 2, "c": 1, "d": 1}
    assert [n.node for n in batch.results[1].nodes] == ["b", "c", "d"]  # continued after a's checkpoint
    assert [r.status for r in bench.list_executions(batch_id=batch_record.batch_id)] == ["completed"] * 3

    # resuming a finished batch runs nothing and returns the stored results
    again = bench.run_batch_test(name, resume=batch_record.batch_id)
    assert [r.started_at for r in again] == [r.started_at for r in batch]
    assert Path(tmp_path / f"{ids[2]}.runs").read_text().split() == ["a", "b", "c", "d"]
