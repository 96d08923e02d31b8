"""Checkpoint storage and strategy, node failures, retries and timeouts."""

from __future__ import annotations

import time

from tests.graphs import marked_steps
from tests.test_control import _name, _state, running_execution, start_in_thread


def test_memory_storage_keeps_checkpoints_in_the_process(bench, tmp_path):
    name = _name("ckpt_memory")
    bench.register_project(marked_steps.make_project(name, "memory"))
    result = bench.run(name, _state(tmp_path))
    assert result.status == "completed"
    assert {k: result.final_state[k] for k in ("x", "log")} == marked_steps.expected_final()
    assert [c.nodes for c in bench.get_checkpoints(result.execution_id)] == [("d",), ("c",), ("b",), ("a",), (), ()]


def test_sqlite_storage_under_concurrent_executions(bench, tmp_path):
    name = _name("ckpt_sqlite_batch")
    bench.register_project(marked_steps.make_project(name, "sqlite"))
    cases = [_state(tmp_path, x=i) for i in range(6)]
    batch = bench.run_batch_test(name, [{}], cases, parallelism=3)
    assert [r.status for r in batch] == ["completed"] * 6
    for i, result in enumerate(batch):
        assert result.final_state["x"] == marked_steps.expected_final(i)["x"]
        checkpoints = bench.get_checkpoints(result.execution_id)
        assert [c.nodes for c in checkpoints] == [("d",), ("c",), ("b",), ("a",), (), ()]
        assert all(c.execution_id == result.execution_id for c in checkpoints)
    assert {r.execution_id for r in bench.list_executions(batch_id=batch.batch_id, status="completed")} == {
        r.execution_id for r in batch
    }


def test_manual_strategy_checkpoints_on_exit_and_on_request(bench, tmp_path):
    name = _name("ckpt_manual")
    bench.register_project(marked_steps.make_project(name, "sqlite", strategy="manual"))
    plain = bench.run(name, _state(tmp_path))
    assert plain.status == "completed"
    assert [c.next for c in bench.get_checkpoints(plain.execution_id)] == [()]  # only the exit checkpoint

    gate = tmp_path / "open"
    thread, box = start_in_thread(bench.run, name, _state(tmp_path, slow_node="b", gate=str(gate)))
    eid = running_execution(bench, name, tmp_path, "b")
    bench.checkpoint(eid)
    gate.touch()  # b finishes only now, after the checkpoint was requested
    thread.join(60)
    result = box["result"]
    assert result.status == "completed"  # a manual checkpoint does not stop the execution
    assert [n.node for n in result.nodes] == ["a", "b", "c", "d"]
    checkpoints = bench.get_checkpoints(eid)
    assert [c.next for c in checkpoints] == [(), ("c",)]
    assert checkpoints[1].values["log"] == ["a", "b"]


def test_failing_node_retried_with_max_retries(bench, tmp_path):
    name = _name("ckpt_retry")
    bench.register_project(marked_steps.make_project(name, "sqlite", factory=marked_steps.flaky_graph, max_retries=1))
    result = bench.run(name, _state(tmp_path))
    assert result.status == "completed", result.error
    assert marked_steps.counts(tmp_path, result.execution_id, "started") == {"a": 1, "flaky": 2}

    name0 = _name("ckpt_noretry")
    bench.register_project(marked_steps.make_project(name0, "sqlite", factory=marked_steps.flaky_graph, max_retries=0))
    failed = bench.run(name0, _state(tmp_path))
    assert failed.status == "failed" and failed.error.node == "flaky"


def test_default_and_node_timeouts_end_a_slow_node(bench, tmp_path):
    by_default = _name("ckpt_timeout_default")
    bench.register_project(marked_steps.make_project(by_default, "sqlite", default_timeout=1))
    per_node = _name("ckpt_timeout_node")
    bench.register_project(marked_steps.make_project(per_node, "sqlite", node_timeouts={"c": 1.0}))
    for name, slow in ((by_default, "b"), (per_node, "c")):
        t0 = time.monotonic()
        result = bench.run(name, _state(tmp_path, slow_node=slow, sleep=60.0))
        assert time.monotonic() - t0 < 50
        assert result.status == "failed"
        assert result.error.node == slow and result.error.type == "TimeoutError", result.error
        assert bench.get_checkpoints(result.execution_id)[0].next == (slow,)


def test_batch_goes_on_when_one_execution_fails(bench, tmp_path):
    name = _name("ckpt_batch_fail")
    bench.register_project(marked_steps.make_project(name, "sqlite"))
    cases = [_state(tmp_path, x=0), _state(tmp_path, x=1, fail_node="b"), _state(tmp_path, x=2)]
    batch = bench.run_batch_test(name, [{}], cases, parallelism=2)
    assert [r.status for r in batch] == ["completed", "failed", "completed"]
    assert batch.failed[0].error.node == "b"
    assert [r.final_state["x"] for r in batch if r.ok] == [
        marked_steps.expected_final(0)["x"],
        marked_steps.expected_final(2)["x"],
    ]
