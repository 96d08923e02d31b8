"""A shared node call fails while other executions wait on it (node_cache="batch", the default).

Two variants that differ only at their last node make the same calls to nodes
a, b and c on a case: one execution computes each call, the other waits for it.
Here the computing execution's b raises while the other waits on that very
call: the waiting execution must be released and end with a result or a clear
error, and nothing may hang.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from tests.graphs import marked_steps
from tests.test_control import _name, _state, start_in_thread, wait_for
from wtb_prefect.run.node_cache import sharing

HANG_GUARD_S = 300.0
MATRIX = [{}, {"d": "alt"}]


@contextlib.contextmanager
def _observe_waits(monkeypatch) -> Iterator[list[str]]:
    """Records every wait of an execution for another execution's identical call (then waits for real)."""
    waits: list[str] = []
    lock = threading.Lock()
    real = sharing.stepping_aside

    @contextlib.contextmanager
    def observed() -> Iterator[None]:
        with lock:
            waits.append(threading.current_thread().name)
        with real():
            yield

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
                lambda: len(waits) >= 2,
                timeout=HANG_GUARD_S,
                what="the second execution to wait on the shared calls of a and b",
            )
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
