"""A shared node call fails while other executions wait on it (node_cache="batch", the default).

Two variants that differ only at their last node make the same calls to nodes
a, b and c on a case: one execution computes each call, the other waits for it.
Here the computing execution's b raises, overruns its timeout, or loses its
worker process while the other waits on that very call: the waiting execution
must be released and end with a result or a clear error, and nothing may hang.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

from tests.graphs import marked_steps
from tests.test_control import _name, _state, start_in_thread, wait_for
from wtb_prefect.run.node_cache import sharing

HANG_GUARD_S = 300.0
MATRIX = [{}, {"d": "alt"}]


@contextlib.contextmanager
def _observe_waits(monkeypatch) -> Iterator[list[str]]:
    """Records the node of every wait of an execution for another execution's identical call (then waits
    for real). Whether the second execution waits on a at all depends on timing (it may find a's result
    already there), so the tests look for its wait on b."""
    waits: list[str] = []
    lock = threading.Lock()
    calling = threading.local()
    real_aside, real_begin = sharing.stepping_aside, sharing.NodeSharing.begin

    def begin(self, plan, *args, **kwargs):  # noqa: ANN001, ANN202 (NodeSharing.begin's own signature)
        calling.node = plan.node
        return real_begin(self, plan, *args, **kwargs)

    @contextlib.contextmanager
    def observed() -> Iterator[None]:
        with lock:
            waits.append(getattr(calling, "node", "?"))
        with real_aside():
            yield

    monkeypatch.setattr(sharing.NodeSharing, "begin", begin)
    monkeypatch.setattr(sharing, "stepping_aside", observed)
    yield waits


def test_the_computing_execution_raises_while_another_waits_on_its_call(bench, tmp_path, monkeypatch):
    name = _name("shared_raise")
    project = marked_steps.make_project(name, "sqlite", node_cache="batch")
    project.register_variant("d", "alt", marked_steps.node_d)
    bench.register_project(project)
    gate = tmp_path / "open"
    case = _state(tmp_path, slow_node="b", gate=str(gate), fail_node="b")
    with _observe_waits(monkeypatch) as waits:
        thread, box = start_in_thread(bench.run_batch_test, name, MATRIX, [case], parallelism=2)
        try:
            # b's computing body holds at the gate; the other execution reaches the same call and waits
            wait_for(
                lambda: any(
                    "b" in marked_steps.counts(tmp_path, p.stem, "started") for p in tmp_path.glob("*.started")
                ),
                timeout=HANG_GUARD_S,
                what="node b to start in the computing execution",
            )
            wait_for(
                lambda: "b" in waits or not thread.is_alive(),
                timeout=HANG_GUARD_S,
                what="the second execution to wait on the computing execution's b",
            )
            assert "b" in waits, f"the batch ended before the second execution waited on b (waits: {waits})"
        finally:
            gate.touch()  # b raises now, while the other execution waits on it
        thread.join(HANG_GUARD_S)
    assert not thread.is_alive(), f"the batch did not end {HANG_GUARD_S:.0f} s after the shared call raised"
    batch = box.get("result")
    assert batch is not None, box.get("error")
    assert [r.status for r in batch] == ["failed", "failed"], [str(r.error) for r in batch]
    for result in batch:  # each execution says which node failed and why, the waiting one too
        assert result.error.node == "b" and "fails on purpose" in result.error.message, result.error
    # a ran once for both executions (shared); the failed b is not shared: the waiting execution ran it itself
    started = [marked_steps.counts(tmp_path, r.execution_id, "started") for r in batch]
    assert sum(s.get("a", 0) for s in started) == 1 and sorted(s.get("b", 0) for s in started) == [1, 1], started


def _run_with_b_held(bench, tmp_path, monkeypatch, name: str, case: dict, open_gate: bool) -> tuple[list, object]:
    """Run the two-variant batch until the second execution waits on the shared call of b, then let b go on
    (``open_gate``) or leave it held; returns the waits seen and the batch."""
    gate = Path(case["gate"])
    with _observe_waits(monkeypatch) as waits:
        thread, box = start_in_thread(bench.run_batch_test, name, MATRIX, [case], parallelism=2)
        try:
            wait_for(
                lambda: any(
                    "b" in marked_steps.counts(tmp_path, p.stem, "started") for p in tmp_path.glob("*.started")
                ),
                timeout=HANG_GUARD_S,
                what="node b to start in the computing execution",
            )
            wait_for(
                lambda: "b" in waits or not thread.is_alive(),
                timeout=HANG_GUARD_S,
                what="the second execution to wait on the computing execution's b",
            )
            assert "b" in waits, f"the batch ended before the second execution waited on b (waits: {waits})"
            if open_gate:
                gate.touch()
            thread.join(HANG_GUARD_S)
        finally:
            gate.touch()  # never leave a body held past the test
            thread.join(HANG_GUARD_S)
    assert not thread.is_alive(), f"the batch did not end {HANG_GUARD_S:.0f} s after the shared call ended"
    batch = box.get("result")
    assert batch is not None, box.get("error")
    return list(waits), batch


def test_the_computing_execution_overruns_its_timeout_while_another_waits_on_its_call(bench, tmp_path, monkeypatch):
    name = _name("shared_timeout")
    project = marked_steps.make_project(name, "sqlite", node_cache="batch", node_timeouts={"b": 4})
    project.register_variant("d", "alt", marked_steps.node_d)
    bench.register_project(project)
    # b's body is held at a gate nobody opens: it overruns its timeout in whichever execution runs it
    case = _state(tmp_path, slow_node="b", gate=str(tmp_path / "never-opened"))
    _, batch = _run_with_b_held(bench, tmp_path, monkeypatch, name, case, open_gate=False)
    assert [r.status for r in batch] == ["failed", "failed"], [str(r.error) for r in batch]
    for result in batch:  # the waiting execution was released, ran b itself and names the same cause
        assert result.error.node == "b" and "timeout of 4" in result.error.message, result.error
    started = [marked_steps.counts(tmp_path, r.execution_id, "started") for r in batch]
    assert sum(s.get("a", 0) for s in started) == 1 and sorted(s.get("b", 0) for s in started) == [1, 1], started


def test_the_computing_execution_loses_its_worker_while_another_waits_on_its_call(bench, tmp_path, monkeypatch):
    name = _name("shared_crash")
    project = marked_steps.make_project(name, "sqlite", node_cache="batch")
    project.register_variant("d", "alt", marked_steps.node_d)
    bench.register_project(project)
    # the first b to get past the gate kills its Ray worker process; a later b goes on
    case = _state(tmp_path, slow_node="b", gate=str(tmp_path / "open"), crash_node="b")
    _, batch = _run_with_b_held(bench, tmp_path, monkeypatch, name, case, open_gate=True)
    by_status = sorted(batch, key=lambda r: r.status)
    assert [r.status for r in by_status] == ["completed", "failed"], [str(r.error) for r in batch]
    completed, failed = by_status
    assert failed.error.node == "b", failed.error  # the execution whose worker died says where
    assert "worker" in failed.error.message.lower() or "died" in failed.error.message.lower(), failed.error
    # the waiting execution was released and computed b itself, to the same value an undisturbed run gives
    expected = marked_steps.expected_final()
    assert {k: completed.final_state[k] for k in expected} == expected, completed.final_state
    started = [marked_steps.counts(tmp_path, r.execution_id, "started") for r in batch]
    assert sum(s.get("a", 0) for s in started) == 1 and sorted(s.get("b", 0) for s in started) == [1, 1], started
