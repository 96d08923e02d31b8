"""Pause, resume (in the same and in a new process), rollback and inspection of
executions, on real SQLite and real PostgreSQL checkpoint storage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest

from tests.graphs import marked_steps
from wtb_prefect.errors import ExecutionStateError, UnknownCheckpointError, UnknownExecutionError

STORAGES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
REPO = Path(__file__).resolve().parents[1]  # on a driver's path, so it imports tests.graphs


def _name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:6]}"


def _state(marker_dir: Path, **extra) -> dict:
    return {"x": 1, "log": [], "marker_dir": str(marker_dir), **extra}


def wait_for(predicate, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def start_in_thread(fn, *args, **kwargs) -> tuple[threading.Thread, dict]:
    box: dict = {}

    def target():
        try:
            box["result"] = fn(*args, **kwargs)
        except BaseException as exc:  # surfaced by the test
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, box


def running_execution(bench, project: str, marker_dir: Path, node: str) -> str:
    """The id of the project's running execution once ``node`` has started in it."""

    def find():
        for record in bench.list_executions(project=project, status="running"):
            if node in marked_steps.counts(marker_dir, record.execution_id, "started"):
                return record.execution_id
        return None

    return wait_for(find, what=f"node {node} of {project} to start")


def run_script(code: str, timeout: float = 180) -> dict:
    """Run ``code`` in a new Python process (same WTB_HOME, Prefect API and Ray) and
    return the JSON it prints last."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("storage", STORAGES)
def test_pause_then_resume_in_new_process_gives_uninterrupted_state(bench, tmp_path, storage):
    name = _name(f"ctl_pause_{storage}")
    bench.register_project(marked_steps.make_project(name, storage))
    gate = tmp_path / "open"
    state = _state(tmp_path, slow_node="b", gate=str(gate))
    gate.touch()  # the baseline passes b's gate
    baseline = bench.run(name, state)
    assert baseline.status == "completed"
    gate.unlink()

    thread, box = start_in_thread(bench.run, name, state)
    eid = running_execution(bench, name, tmp_path, "b")
    bench.pause(eid)
    gate.touch()  # b finishes only now, after the pause was requested
    thread.join(60)
    paused = box["result"]
    assert paused.status == "paused", paused.error
    assert [n.node for n in paused.nodes] == ["a", "b"]  # b finished: the running node is not lost
    assert bench.get_execution(eid).status == "paused"
    assert bench.get_state(eid)["log"] == ["a", "b"]
    latest = bench.get_checkpoints(eid)[0]
    assert latest.next == ("c",) and latest.nodes == ("b",)
    bench.pause(eid)  # pausing a paused execution does nothing

    out = run_script(f"""
        import json
        from tests.graphs import marked_steps
        from wtb_prefect import WTBTestBench
        bench = WTBTestBench()
        bench.register_project(marked_steps.make_project({name!r}, {storage!r}))
        result = bench.resume({eid!r})
        print(json.dumps({{"status": result.status, "state": result.final_state,
                          "nodes": [n.node for n in result.nodes]}}))
    """)
    assert out["status"] == "completed"
    assert out["nodes"] == ["c", "d"]
    assert out["state"] == baseline.final_state
    assert marked_steps.counts(tmp_path, eid) == {"a": 1, "b": 1, "c": 1, "d": 1}
    assert bench.get_execution(eid).status == "completed"
    assert bench.get_state(eid) == baseline.final_state
    with pytest.raises(ExecutionStateError, match="completed"):
        bench.resume(eid)


def test_pause_then_resume_in_same_process(bench, tmp_path):
    name = _name("ctl_pause_same")
    bench.register_project(marked_steps.make_project(name, "sqlite"))
    gate = tmp_path / "open"
    thread, box = start_in_thread(bench.run, name, _state(tmp_path, slow_node="c", gate=str(gate)))
    eid = running_execution(bench, name, tmp_path, "c")
    with pytest.raises(ExecutionStateError, match="running"):
        bench.rollback(eid, bench.get_checkpoints(eid)[-1].checkpoint_id)
    with pytest.raises(ExecutionStateError, match="running"):
        bench.resume(eid)
    assert bench.get_state(eid)["log"] == ["a", "b"]  # inspection of a running execution
    bench.pause(eid)
    gate.touch()  # c finishes only now: the pause takes effect at the boundary after it
    thread.join(60)
    assert box["result"].status == "paused"
    resumed = bench.resume(eid)
    assert resumed.status == "completed"
    assert [n.node for n in resumed.nodes] == ["d"]
    assert resumed.final_state["log"] == ["a", "b", "c", "d"]
    assert marked_steps.counts(tmp_path, eid) == {"a": 1, "b": 1, "c": 1, "d": 1}


def test_pause_requested_from_another_process(bench, tmp_path):
    name = _name("ctl_pause_remote")
    bench.register_project(marked_steps.make_project(name, "sqlite"))
    gate = tmp_path / "open"
    thread, box = start_in_thread(bench.run, name, _state(tmp_path, slow_node="b", gate=str(gate)))
    eid = running_execution(bench, name, tmp_path, "b")
    out = run_script(f"""
        import json
        from wtb_prefect import WTBTestBench
        bench = WTBTestBench()  # no project registered: a pause needs only the execution index
        bench.pause({eid!r})
        print(json.dumps({{"status": bench.get_execution({eid!r}).status}}))
    """)
    assert out["status"] == "running"
    gate.touch()  # node b may finish now; the pause takes effect at the boundary after it
    thread.join(120)
    result = box["result"]
    assert result.status == "paused"
    assert [n.node for n in result.nodes] == ["a", "b"]
    assert bench.get_checkpoints(eid)[0].next == ("c",)


@pytest.mark.parametrize("storage", STORAGES)
def test_rollback_then_resume_reruns_exactly_the_nodes_after_the_checkpoint(bench, tmp_path, storage):
    name = _name(f"ctl_rollback_{storage}")
    bench.register_project(marked_steps.make_project(name, storage))
    first = bench.run(name, _state(tmp_path))
    assert first.status == "completed"
    eid = first.execution_id
    checkpoints = bench.get_checkpoints(eid)
    assert [c.nodes for c in checkpoints] == [("d",), ("c",), ("b",), ("a",), (), ()]
    assert [c.source for c in checkpoints][-1] == "input"
    assert all(c.created_at is not None for c in checkpoints)
    assert [c.parent_id for c in checkpoints[:-1]] == [c.checkpoint_id for c in checkpoints[1:]]
    after_b = next(c for c in checkpoints if c.nodes == ("b",))

    bench.rollback(eid, after_b.checkpoint_id)
    assert bench.get_execution(eid).status == "paused"
    assert bench.get_state(eid)["log"] == ["a", "b"]
    assert bench.get_checkpoints(eid)[0].next == ("c",)
    resumed = bench.resume(eid)
    assert resumed.status == "completed"
    assert [n.node for n in resumed.nodes] == ["c", "d"]
    assert resumed.final_state == first.final_state
    assert marked_steps.counts(tmp_path, eid) == {"a": 1, "b": 1, "c": 2, "d": 2}

    # back to the input checkpoint: everything runs again
    bench.rollback(eid, checkpoints[-1].checkpoint_id)
    again = bench.resume(eid)
    assert [n.node for n in again.nodes] == ["a", "b", "c", "d"]
    assert again.final_state == first.final_state


def test_failed_execution_records_node_and_last_good_checkpoint(bench, tmp_path):
    name = _name("ctl_fail")
    bench.register_project(marked_steps.make_project(name, "sqlite"))
    result = bench.run(name, _state(tmp_path, fail_node="c"))
    assert result.status == "failed"
    assert result.error.node == "c" and "fails on purpose" in result.error.message
    latest = bench.get_checkpoints(result.execution_id)[0]
    assert result.provenance["checkpoint_id"] == latest.checkpoint_id
    assert latest.nodes == ("b",) and latest.next == ("c",)
    record = bench.get_execution(result.execution_id)
    assert record.status == "failed" and "fails on purpose" in record.error
    assert bench.get_result(result.execution_id).error.node == "c"
    # the last good checkpoint is kept: a resume runs the failed node again
    again = bench.resume(result.execution_id)
    assert again.status == "failed" and [n.node for n in again.nodes] == ["c"]
    assert marked_steps.counts(tmp_path, result.execution_id) == {"a": 1, "b": 1}


def test_bad_control_input_raises_typed_errors(bench, tmp_path):
    name = _name("ctl_bad")
    bench.register_project(marked_steps.make_project(name, "sqlite"))
    done = bench.run(name, _state(tmp_path))
    for call in (bench.pause, bench.resume, bench.get_state, bench.get_checkpoints, bench.checkpoint):
        with pytest.raises(UnknownExecutionError, match="no execution 'nope'"):
            call("nope")
    with pytest.raises(UnknownExecutionError):
        bench.rollback("nope", "x")
    with pytest.raises(UnknownCheckpointError, match="no checkpoint 'not-a-checkpoint'"):
        bench.rollback(done.execution_id, "not-a-checkpoint")
    with pytest.raises(ExecutionStateError, match="completed"):
        bench.resume(done.execution_id)
    with pytest.raises(ExecutionStateError, match="completed"):
        bench.pause(done.execution_id)
    with pytest.raises(ExecutionStateError, match="not running"):
        bench.checkpoint(done.execution_id)
