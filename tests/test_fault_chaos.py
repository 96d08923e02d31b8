"""Chaos: the driver of a batch is killed with SIGKILL at random points and resumed each time.

The kill points come from a seed, printed at the start: ``WTB_CHAOS_SEED=<seed>`` replays a run's
choices (a new random seed otherwise).
"""

from __future__ import annotations

import os
import random
import signal

import pytest

from tests.graphs import marked_steps
from tests.support.drivers import driver_env, read_outcome, start_driver, wait_exit
from tests.test_control import _name, _state, wait_for

KILLS = 5
HANG_GUARD_S = 600

DRIVER = """
import json
from tests.graphs import marked_steps
from wtb_prefect import WTBTestBench

bench = WTBTestBench()
project = marked_steps.make_project({name!r}, "sqlite", node_cache={node_cache!r})
project.register_variant("d", "alt", marked_steps.node_d)
bench.register_project(project)
known = bench.list_batches({name!r})
if known:
    batch = bench.run_batch_test({name!r}, resume=known[0].batch_id)
else:
    batch = bench.run_batch_test({name!r}, {matrix!r}, {cases!r}, parallelism=2)
rows = [[r.variant_label, r.case_id, r.status, r.final_state["x"], r.final_state["log"]] for r in batch]
errors = [str(r.error) for r in batch.failed]
print("OUTCOME " + json.dumps({{"batch_id": batch.batch_id, "rows": rows, "errors": errors}}), flush=True)
"""

MATRIX = [{}, {"d": "alt"}]
SEED_VAR = "WTB_CHAOS_SEED"


def chaos_seed() -> int:
    """The seed from ``WTB_CHAOS_SEED``, else a new random one."""
    given = os.environ.get(SEED_VAR, "").strip()
    if not given:
        return random.randrange(1 << 30)
    try:
        return int(given)
    except ValueError:
        raise AssertionError(f"{SEED_VAR}={given!r} is not an integer: give the seed a chaos run printed") from None


def _started(marker_dir) -> int:
    return sum(len(p.read_text().split()) for p in marker_dir.glob("*.started"))


@pytest.mark.parametrize("node_cache", ["off", "batch"])
def test_driver_killed_at_five_random_points_ends_with_every_result_once(bench, tmp_path, node_cache):
    seed = chaos_seed()
    print(f"\nchaos seed {seed} (replay with {SEED_VAR}={seed})", flush=True)
    rng = random.Random(seed)
    name = _name("chaos")
    marker = tmp_path / "markers"
    marker.mkdir()
    cases = [_state(marker, x=x, slow_node="b", sleep=0.5) for x in range(3)]
    # node starts the batch needs at least: with sharing on, the two variants' identical calls run once
    total_nodes = (len(MATRIX) if node_cache == "off" else 1) * len(cases) * len(marked_steps.NODES)
    # kill points: after the k-th node start of the whole batch, k spread at random over its work
    points = sorted(rng.sample(range(1, total_nodes - 2), KILLS))
    env = driver_env(bench.settings.state_dir, WTB_MLFLOW_ENABLED="false")
    code = DRIVER.format(name=name, matrix=MATRIX, cases=cases, node_cache=node_cache)
    for number, point in enumerate(points):
        log = tmp_path / f"driver{number}.log"
        driver = start_driver(code, env, log)
        try:
            wait_for(
                lambda p=point, d=driver: _started(marker) >= p or d.poll() is not None,
                timeout=HANG_GUARD_S,
                what=f"node start {point} (seed {seed})",
            )
            assert driver.poll() is None, (
                f"driver {number} ended before kill point {point}:\n" + log.read_text()[-3000:]
            )
            os.killpg(driver.pid, signal.SIGKILL)
            assert wait_exit(driver, 60) is not None
        finally:
            if driver.poll() is None:
                os.killpg(driver.pid, signal.SIGKILL)
    log = tmp_path / "final.log"
    final = start_driver(code, env, log)
    try:
        outcome = wait_for(lambda: read_outcome(log), timeout=HANG_GUARD_S, what="the final resume")
    finally:
        wait_exit(final, 60)
        if final.poll() is None:
            os.killpg(final.pid, signal.SIGKILL)
    batch_id = outcome["batch_id"]

    # an uninterrupted run of the same batch, for comparison
    project = marked_steps.make_project(_name("chaos_ref"), "sqlite", node_cache=node_cache)
    project.register_variant("d", "alt", marked_steps.node_d)
    bench.register_project(project)
    clean_marker = tmp_path / "clean"
    clean_marker.mkdir()
    reference = bench.run_batch_test(
        project.name, MATRIX, [_state(clean_marker, x=x, slow_node="b", sleep=0.5) for x in range(3)], parallelism=2
    )
    expected = [[r.variant_label, r.case_id, r.status, r.final_state["x"], r.final_state["log"]] for r in reference]
    # node bodies per call: a, b and c are the same call for both variants of a case
    for case in ("0", "1", "2"):
        runs: dict[str, int] = {}
        for result in (r for r in reference if r.case_id == case):
            for node, count in marked_steps.counts(clean_marker, result.execution_id).items():
                runs[node] = runs.get(node, 0) + count
        shared = {node: runs[node] for node in ("a", "b", "c")}
        assert shared == dict.fromkeys(shared, 1 if node_cache == "batch" else 2), (node_cache, case, runs)

    keys = [(row[0], row[1]) for row in outcome["rows"]]
    assert len(keys) == len(set(keys)) == len(MATRIX) * len(cases), f"seed {seed}"  # each pair exactly once
    assert outcome["rows"] == expected, f"seed {seed}, kill points {points}"
    records = bench.list_executions(batch_id=batch_id)
    assert len(records) == len(MATRIX) * len(cases) and {r.status for r in records} == {"completed"}

    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[f"{name}-batch-{batch_id}"]))
        )
    states = sorted(run.state.type.value for run in runs)
    assert "RUNNING" not in states and "PENDING" not in states, f"seed {seed}: {states}"
    assert states.count("COMPLETED") == 1, states
    print(f"\nchaos seed {seed}: kill points {points} of {total_nodes} node starts; flow runs {states}")
