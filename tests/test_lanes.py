"""I/O lanes: LLM-shaped nodes run many at a time in actors, with timeouts on their own run time,
a cold start that spends no timeout, rate limits, and retries when an actor dies."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from pathlib import Path

import pytest

from tests.graphs import llm_shaped as lg
from wtb_prefect import ExecutionConfig, NodeResourceConfig, RayConfig, WorkflowProject
from wtb_prefect.run.lanes import CallLimiter


def _project(name, factory, resources=None, **execution) -> WorkflowProject:
    execution.setdefault("ray_config", RayConfig(max_retries=0))
    return WorkflowProject(
        name=name,
        graph_factory=factory,
        execution=ExecutionConfig(
            default_node_resources=resources or NodeResourceConfig(num_cpus=0.1, memory="64MB"), **execution
        ),
    )


def _events(log: Path) -> list[tuple[int, str, int]]:
    rows = [line.split() for line in log.read_text().splitlines()]
    return [(int(t), kind, int(pid)) for t, kind, pid in rows]


def _most_at_once(events: list[tuple[int, str, int]]) -> int:
    running = most = 0
    for _, kind, _ in sorted(events, key=lambda e: (e[0], e[1] != "end")):  # an end before a start at a tie
        running += 1 if kind == "start" else -1
        most = max(most, running)
    return most


def test_in_flight_limit_holds_across_actors(bench, tmp_path):
    """30 calls under max_in_flight=5 never have more than 5 bodies running, across 3 actors."""
    log = tmp_path / "calls.log"
    resources = NodeResourceConfig(num_cpus=0.1, memory="64MB", max_in_flight=5, calls_per_worker=2)
    bench.register_project(_project("lane_limit", lg.one_call_graph, resources))
    cases = [{"x": i, "log": str(log), "seconds": 0.5} for i in range(30)]
    batch = bench.run_batch_test("lane_limit", [{}], cases, parallelism=30)
    assert not batch.failed, batch.failed[0].error
    events = _events(log)
    assert len(events) == 60
    assert 2 <= _most_at_once(events) <= 5
    assert len({pid for _, _, pid in events}) <= 3, "the calls ran in the pool's actors, not a process each"


def test_calls_per_second_limit_paces_starts():
    """A per-second limit spaces call starts by 1/rate (a pure unit test of the driver's limiter)."""
    limiter = CallLimiter(max_in_flight=None, per_second=20)
    starts = []
    for _ in range(11):
        assert limiter.acquire(time.monotonic() + 10) is None
        starts.append(time.monotonic())
        limiter.release()
    assert starts[-1] - starts[0] >= 10 / 20 - 0.01


def test_in_flight_limit_reports_what_was_short():
    limiter = CallLimiter(max_in_flight=1, per_second=None)
    assert limiter.acquire(time.monotonic() + 1) is None
    assert "max_in_flight" in limiter.acquire(time.monotonic() + 0.05)


@pytest.mark.parametrize(
    ("factory", "io_bound"),
    [(lg.sleeper_graph, False), (lg.sleeper_graph, True), (lg.async_sleeper_graph, False)],
    ids=["ray_task", "threaded_actor", "async_actor"],
)
def test_node_sleeping_past_its_timeout_fails_with_the_timeout(bench, factory, io_bound):
    name = f"lane_timeout_{factory.__name__}_{io_bound}"
    resources = NodeResourceConfig(num_cpus=0.1, memory="64MB", io_bound=io_bound)
    bench.register_project(_project(name, factory, resources, node_timeouts={"sleeper": 2}))
    result = bench.run(project=name, initial_state={"x": 0, "seconds": 60})
    assert result.status == "failed"
    assert result.error.type == "TimeoutError", result.error
    assert "timeout of 2" in result.error.message
    assert result.nodes[0].run_s is not None and result.nodes[0].run_s < 60


def _held_project(name, cpus, **execution):
    project = _project(name, lg.held_resource_graph, **execution)
    project.execution.node_resources = {
        "holder": NodeResourceConfig(num_cpus=cpus, memory="64MB"),
        "gate": NodeResourceConfig(num_cpus=0, memory="16MB"),
        "waiter": NodeResourceConfig(num_cpus=1, memory="64MB"),
    }
    return project


def test_wait_for_a_held_resource_does_not_spend_the_timeout(bench, ray_cluster, tmp_path):
    """A node that waits for CPUs another node holds longer than its timeout, then runs briefly, succeeds: the wait does not count."""
    project = _held_project("lane_held", ray_cluster["CPU"], node_timeouts={"holder": 120, "gate": 120, "waiter": 5})
    bench.register_project(project)
    log = str(tmp_path / "held")
    cases = [{"log": log, "role": "hold"}, {"log": log, "role": "wait"}]
    batch = bench.run_batch_test("lane_held", [{}], cases, parallelism=2)
    assert not batch.failed, batch.failed[0].error
    holder = next(r for r in batch.results[0].nodes if r.node == "holder")
    waiter = next(r for r in batch.results[1].nodes if r.node == "waiter")
    timing = [(r.node, r.started_at, r.queue_s, r.run_s) for r in (holder, waiter)]
    assert waiter.queue_s > 5, f"the waiter queued for longer than its timeout: {timing}"


def test_queue_timeout_names_what_was_short(bench, ray_cluster, tmp_path):
    bench.register_project(_held_project("lane_short", ray_cluster["CPU"], queue_timeout=8))
    log = str(tmp_path / "short")
    cases = [{"log": log, "role": "hold"}, {"log": log, "role": "wait"}]
    batch = bench.run_batch_test("lane_short", [{}], cases, parallelism=2)
    holder, waiting = batch.results
    assert holder.status == "completed", holder.error
    assert waiting.status == "failed"
    assert waiting.error.type == "NodeQueueTimeoutError"
    assert waiting.error.node == "waiter"
    assert "CPUs" in waiting.error.message and "queue_timeout=8" in waiting.error.message


def _burn(stop) -> None:
    while not stop.is_set():
        sum(i * i for i in range(10_000))


def test_cold_batch_under_cpu_load_has_no_failure(bench):
    """A cold pool (new resource shape) at 8x the CPU count, with every CPU kept busy, loses nothing."""
    cpus = os.cpu_count() or 2
    stop = multiprocessing.Event()
    burners = [multiprocessing.Process(target=_burn, args=(stop,), daemon=True) for _ in range(cpus)]
    for proc in burners:
        proc.start()
    try:
        resources = NodeResourceConfig(num_cpus=0.1, memory="72MB", calls_per_worker=8)  # a shape no test used
        bench.register_project(
            _project("lane_cold", lg.two_call_graph, resources, node_timeouts={"first": 5, "second": 5})
        )
        n = 8 * cpus
        cases = [{"x": i, "log": os.devnull, "seconds": 1.0} for i in range(n)]
        batch = bench.run_batch_test("lane_cold", [{}], cases, parallelism=n)
    finally:
        stop.set()
        for proc in burners:
            proc.join(10)
    assert not batch.failed, batch.failed[0].error
    assert [r.final_state["x"] for r in batch.results] == [2 * (i + 1) for i in range(n)]


def test_dead_actor_is_restarted_and_its_call_retried(bench, tmp_path):
    resources = NodeResourceConfig(num_cpus=0.1, memory="64MB", io_bound=True)
    project = _project("lane_crash", lg.crash_graph, resources, ray_config=RayConfig(max_retries=2, retry_delay=0.5))
    bench.register_project(project)
    result = bench.run(project="lane_crash", initial_state={"x": 1, "log": str(tmp_path / "crash")})
    ended = time.time()
    assert (tmp_path / "crash.crashed").exists(), "the first attempt killed its actor"
    assert result.status == "completed", result.error
    assert result.final_state["x"] == 2
    crashed = (tmp_path / "crash.crashed").stat().st_mtime
    retried = (tmp_path / "crash.retried").stat().st_mtime - crashed
    print(f"crash -> retry running {retried:.1f}s, crash -> run completed {ended - crashed:.1f}s")
    assert retried < 60, f"the retry ran {retried:.0f}s after the crash: it waited on something slow"


def test_dead_actor_leaves_the_other_actors_calls_alone(bench, tmp_path):
    """One actor of three dies while the other two hold calls: only its own call fails and is retried."""
    resources = NodeResourceConfig(num_cpus=0.1, memory="64MB", io_bound=True, calls_per_worker=1)
    project = _project("lane_crowd", lg.crowd_graph, resources, ray_config=RayConfig(max_retries=2, retry_delay=0.5))
    bench.register_project(project)
    log = tmp_path / "crowd"
    cases = [{"x": i, "log": str(log), "role": "crash" if i == 0 else "peer", "peers": 2} for i in range(3)]
    batch = bench.run_batch_test("lane_crowd", [{}], cases, parallelism=3)
    assert (tmp_path / "crowd.crashed").exists(), "the crashing call killed its actor"
    assert not batch.failed, batch.failed[0].error
    assert [r.final_state["x"] for r in batch.results] == [1, 2, 3]
    events = _events(log)
    starts = [pid for _, kind, pid in events if kind == "start"]
    assert len(starts) == 2 and len(events) == 4, f"each peer's call ran once, to its end: {events}"
    assert len(set(starts)) == 2, "the peers held calls on two other actors"


# ─── automatic lanes: nodes nobody marked ───


def test_the_definition_fixes_the_lane_when_it_says():
    from wtb_prefect.run.auto_lane import fixed_lane

    assert fixed_lane(NodeResourceConfig(), is_async=True) == ("actor", "async def")
    assert fixed_lane(NodeResourceConfig(io_bound=True), is_async=False) == ("actor", "io_bound=True")
    assert fixed_lane(NodeResourceConfig(io_bound=False, rate_limit="x"), is_async=False) == ("task", "io_bound=False")
    kind, reason = fixed_lane(NodeResourceConfig(num_cpus=1), is_async=False)
    assert kind == "task" and "num_cpus" in reason, "a written request wins, even at its default value"
    assert fixed_lane(NodeResourceConfig(rate_limit="openai", max_in_flight=3), is_async=False) == (None, "")


def test_three_probe_calls_decide_and_the_others_wait_for_the_verdict():
    from wtb_prefect.run.auto_lane import AutoLane

    lane = AutoLane()
    probes = [lane.choose(time.monotonic() + 5) for _ in range(3)]
    assert all(kind == "task" and probe for kind, _, probe in probes)
    later: list = []
    waiting = threading.Thread(target=lambda: later.append(lane.choose(time.monotonic() + 5)))
    waiting.start()
    time.sleep(0.1)
    assert not later, "a fourth call waits for the verdict"
    for _ in range(3):
        lane.measured(cpu_s=0.01, wall_s=1.0)
    waiting.join(5)
    kind, reason, probe = later[0]
    assert kind == "actor" and not probe and "waits" in reason


def test_a_node_that_computes_stays_on_tasks():
    from wtb_prefect.run.auto_lane import AutoLane

    lane = AutoLane()
    for _ in range(3):
        lane.choose(time.monotonic() + 5)
    lane.measured(0.05, 1.0)  # one call that waited does not decide alone
    lane.measured(0.9, 1.0)
    lane.measured(0.9, 1.0)
    kind, reason, _ = lane.choose(time.monotonic() + 5)
    assert kind == "task" and "computes" in reason


def test_a_lost_probe_is_replaced():
    from wtb_prefect.run.auto_lane import AutoLane

    lane = AutoLane()
    for _ in range(3):
        lane.choose(time.monotonic() + 5)
    lane.lost()
    kind, _, probe = lane.choose(time.monotonic() + 5)
    assert kind == "task" and probe


def test_a_verdict_is_announced_once_it_is_reached():
    from wtb_prefect.run.auto_lane import AutoLane

    lane = AutoLane()
    heard: list[str] = []
    lane.when_decided(heard.append)
    for _ in range(3):
        lane.choose(time.monotonic() + 5)
    lane.measured(0.01, 1.0)
    lane.measured(0.01, 1.0)
    assert heard == [], "no verdict before the third probe"
    lane.measured(0.01, 1.0)
    lane.when_decided(heard.append)  # already known: told at once
    assert heard == ["actor", "actor"]


_NEW_DRIVER = """
import time
from wtb_prefect.run.auto_lane import AutoLane
lane = AutoLane("proj|default|call|tests.node|abc")
kind, reason, probe = lane.choose(time.monotonic() + 1)
print(kind, probe, reason)
"""


def _new_driver(home: Path) -> str:
    import subprocess
    import sys

    env = {**os.environ, "WTB_HOME": str(home)}
    done = subprocess.run([sys.executable, "-c", _NEW_DRIVER], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_later_driver_starts_from_the_verdict_an_earlier_one_reached(tmp_path, monkeypatch):
    """A CLI run or a deployment's flow run is a new driver each time: it does not probe a node again."""
    from wtb_prefect.run.auto_lane import VERDICTS_FILE, AutoLane

    monkeypatch.setenv("WTB_HOME", str(tmp_path))
    assert _new_driver(tmp_path).startswith("task True finding out"), "nothing known yet: the call probes"
    lane = AutoLane("proj|default|call|tests.node|abc")
    for _ in range(3):
        lane.choose(time.monotonic() + 5)
    for _ in range(3):
        lane.measured(0.01, 1.0)
    assert (tmp_path / VERDICTS_FILE).exists()
    kind, probe, reason = _new_driver(tmp_path).split(" ", 2)
    assert (kind, probe) == ("actor", "False") and reason.startswith("measured earlier: waits"), reason
    (tmp_path / VERDICTS_FILE).write_text("{not json")
    assert _new_driver(tmp_path).startswith("task True finding out"), "an unreadable file: the node probes again"


class _FakePool:
    """An I/O lane's pool without Ray: what batch_lanes starts and stops."""

    started: list[_FakePool] = []

    def __init__(self, options, per_actor):
        self.per_actor, self.actors, self.users, self.killed = per_actor, [], 0, False
        _FakePool.started.append(self)

    def grow(self, size, bodies):
        self.actors = [object()] * max(size, len(self.actors))
        return []

    def kill(self):
        self.killed = True


@pytest.mark.parametrize(
    ("verdicts", "stopped"),
    [(("task", "task"), True), (("task", "actor"), False), (("actor", "task"), False)],
)
def test_the_lane_started_while_nodes_are_probed_stops_once_all_compute(monkeypatch, verdicts, stopped):
    """Nodes still to be found out get their I/O lane started with the batch (so one found to wait
    finds it up); it is stopped, returning its reservation, once every one of them computes."""
    from wtb_prefect.run import lanes
    from wtb_prefect.run.lanes import batch_lanes, lane_spec

    monkeypatch.setattr(lanes, "ActorPool", _FakePool)
    monkeypatch.setattr(lanes, "_session", lambda: f"fake-{verdicts}")
    _FakePool.started.clear()
    specs = [
        lane_spec(name, lambda state: state, NodeResourceConfig(), {}, limit_key="", queue_timeout=5)
        for name in ("a", "b")
    ]
    with batch_lanes(specs, concurrency=40):
        [pool] = _FakePool.started
        assert len(pool.actors) == 2 and not pool.killed, "started, sized for the batch, before any verdict"
        for spec, verdict in zip(specs, verdicts, strict=True):
            for _ in range(3):
                spec.auto.choose(time.monotonic() + 5)
            for _ in range(3):
                spec.auto.measured(0.01 if verdict == "actor" else 0.9, 1.0)
        assert pool.killed is stopped


def _auto_project(name, factory) -> WorkflowProject:
    # No resources written: the bench finds out where each node runs.
    return WorkflowProject(
        name=name, graph_factory=factory, execution=ExecutionConfig(ray_config=RayConfig(max_retries=0))
    )


def test_unmarked_waiting_nodes_move_to_the_io_lane_with_the_same_results(bench):
    """Plain def nodes that sleep start on Ray tasks, move to the I/O lane mid-batch, and every case
    ends in the state graph.invoke gives it."""
    from tests.graphs import unmarked

    bench.register_project(_auto_project("auto_waiting", unmarked.waiting_graph))
    cases = [{"x": i, "seconds": 0.3, "parts": []} for i in range(12)]
    batch = bench.run_batch_test("auto_waiting", [{}], cases, parallelism=6)
    assert not batch.failed, batch.failed[0].error
    graph = unmarked.waiting_graph()
    for index, case in enumerate(cases):
        assert batch.get("default", str(index)).final_state == graph.invoke(case)
    records = [r for res in batch.results for r in res.nodes]
    for node in ("plan", "call", "gather"):
        mine = [r for r in records if r.node == node]
        probes = [r for r in mine if r.lane == "task" and r.lane_reason.startswith("finding out")]
        moved = [r for r in mine if r.lane == "io"]
        assert len(probes) >= 3, (node, [(r.lane, r.lane_reason) for r in mine])
        assert moved, f"{node} never moved to the I/O lane: {[(r.lane, r.lane_reason) for r in mine]}"
        assert all("measured: waits" in r.lane_reason for r in moved)
    report = batch.node_calls()["lanes"]  # the batch's node-call report says it too
    assert report["call"]["io"] > 0 and report["call"]["task"] >= 3 and "waits" in report["call"]["reason"]


def test_unmarked_computing_nodes_stay_on_ray_tasks(bench):
    from tests.graphs import unmarked

    cases = [{"x": i, "seconds": 0.3} for i in range(6)]
    bench.register_project(_auto_project("auto_computing", unmarked.computing_graph))
    batch = bench.run_batch_test("auto_computing", [{}], cases, parallelism=2)
    assert not batch.failed, batch.failed[0].error
    assert [r.final_state["y"] for r in batch.results] == [3 * i + 1 for i in range(6)]
    records = [r for res in batch.results for r in res.nodes]
    assert all(r.lane == "task" for r in records), [(r.lane, r.lane_reason) for r in records]
    assert any("measured: computes" in r.lane_reason for r in records)


def test_marked_nodes_keep_their_lane_and_say_why(bench):
    from tests.graphs import unmarked

    project = _auto_project("auto_marked", unmarked.waiting_graph)
    project.execution.node_resources = {
        "plan": NodeResourceConfig(io_bound=False),
        "call": NodeResourceConfig(io_bound=True, num_cpus=0.1, memory="64MB"),
        "gather": NodeResourceConfig(num_cpus=0.5, memory="64MB"),
    }
    bench.register_project(project)
    batch = bench.run_batch_test("auto_marked", [{}], [{"x": i, "seconds": 0.2, "parts": []} for i in range(4)])
    assert not batch.failed, batch.failed[0].error
    seen = {(r.node, r.lane, r.lane_reason) for res in batch.results for r in res.nodes}
    assert seen == {
        ("plan", "task", "io_bound=False"),
        ("call", "io", "io_bound=True"),
        ("gather", "task", "explicit request (num_cpus, memory)"),
    }
