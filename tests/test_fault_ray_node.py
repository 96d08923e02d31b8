"""A Ray node lost in the middle of a batch, on a two-raylet cluster of the test's own.

The driver subprocess starts a head raylet and a second raylet that alone has
the custom resource ``side`` (both have one ``shared`` unit), runs a batch in
which the ``work`` node of the default variant asks for ``shared`` and that of
variant ``side`` asks for ``side``, and kills the second raylet while work
nodes of both variants run on it. The session's Ray cluster is not touched.
"""

from __future__ import annotations

import os
import signal

from tests.support.drivers import driver_env, read_outcome, start_driver, wait_exit
from tests.test_control import _name, wait_for

HANG_GUARD_S = 600

DRIVER = """
import json, threading, time
import ray
from ray.cluster_utils import Cluster

from tests.graphs import multinode
from wtb_prefect import ExecutionConfig, NodeResourceConfig, RayConfig, WorkflowProject, WTBTestBench
from wtb_prefect.services.ray_cluster import worker_env_vars

marker = {marker!r}
for attempt in range(3):  # a raylet gives up when its agents start slowly on a loaded machine
    cluster = Cluster()
    try:
        cluster.add_node(num_cpus=2, resources={{"shared": 1}}, include_dashboard=False)
        side = cluster.add_node(num_cpus=2, resources={{"side": 1, "shared": 1}})
        cluster.wait_for_nodes()
        break
    except Exception:
        cluster.shutdown()
        if attempt == 2:
            raise
ray.init(address=cluster.address, runtime_env={{"env_vars": worker_env_vars()}}, namespace="wtb_prefect")

small = dict(num_cpus=0.25, memory="64MB")
project = WorkflowProject(
    name={name!r},
    graph_factory=multinode.graph,
    execution=ExecutionConfig(
        batch_executor="ray",
        default_node_resources=NodeResourceConfig(**small),
        node_resources={{"work": NodeResourceConfig(**small, custom_resources={{"shared": 1}})}},
        ray_config=RayConfig(address=cluster.address, max_retries=1, retry_delay=0.0),
        checkpoint_storage="sqlite",
        node_cache="off",  # every (variant, case) runs its own nodes, on the raylet its request picks
    ),
)
project.register_variant("work", "side", multinode.work,
                         resources=NodeResourceConfig(**small, custom_resources={{"side": 1}}))
bench = WTBTestBench()
bench.register_project(project)

def starts():
    return [(p.stem, line.split()[1]) for p in __import__("pathlib").Path(marker).glob("*.work")
            for line in p.read_text().splitlines() if line.startswith("start")]

killed = {{}}

def killer():
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline:
        on_side = [eid for eid, node in starts() if node == side.node_id]
        if any(e.endswith("-v0-c0") or e.endswith("-v0-c1") for e in on_side) and any("-v1-" in e for e in on_side):
            cluster.remove_node(side, allow_graceful=False)
            killed["at"] = time.time()
            killed["while_running"] = sorted(on_side)
            return
        time.sleep(0.05)

thread = threading.Thread(target=killer, daemon=True)
thread.start()
cases = [{{"x": x, "marker_dir": marker, "sleep": 6.0}} for x in range(2)]
batch = bench.run_batch_test({name!r}, [{{}}, {{"work": "side"}}], cases, parallelism=4)
thread.join(5)
rows = [[r.variant_label, r.case_id, r.status, r.execution_id, r.final_state.get("x") if r.final_state else None,
         r.error.type if r.error else None, r.error.message if r.error else None] for r in batch]
index = [[rec.execution_id, rec.status] for rec in bench.list_executions(batch_id=batch.batch_id)]
print("OUTCOME " + json.dumps({{"rows": rows, "index": index, "side": side.node_id, "killed": killed,
                               "batch_at": time.time()}}), flush=True)
ray.shutdown()
cluster.shutdown()
"""


def test_lost_ray_node_retries_what_can_run_elsewhere_and_fails_the_rest_clearly(ray_cluster, tmp_path):
    from tests.graphs import multinode

    name = _name("ray_node_lost")
    marker = tmp_path / "markers"
    marker.mkdir()
    env = driver_env(tmp_path / "home", WTB_MLFLOW_ENABLED="false")
    env.pop("RAY_ADDRESS", None)  # a cluster of its own, not the session's
    log = tmp_path / "driver.log"
    driver = start_driver(DRIVER.format(name=name, marker=str(marker)), env, log)
    try:
        outcome = wait_for(
            lambda: read_outcome(log) or driver.poll() is not None,
            timeout=HANG_GUARD_S,
            what="the batch on the two-node cluster",
        )
        wait_exit(driver, 120)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    output = log.read_text(errors="replace")
    assert isinstance(outcome, dict), output[-4000:]
    assert outcome["killed"], "the second raylet was never killed:\n" + output[-3000:]
    side = outcome["side"]
    rows = {(r[0], r[1]): r for r in outcome["rows"]}
    assert len(outcome["rows"]) == len(rows) == 4  # every (variant, case) once: none lost, none counted twice
    assert sorted(s for _, s in outcome["index"]) == ["completed", "completed", "failed", "failed"]

    for case in ("0", "1"):
        # the default variant asks for "shared", which the head has too: its work completed
        label, _, status, execution_id, x, _, _ = rows[("default", case)]
        assert status == "completed", rows[("default", case)]
        assert x == (int(case) + 1) * 10
        log_lines = multinode.work_log(marker, execution_id)
        if execution_id in outcome["killed"]["while_running"]:  # it was on the lost node: run again elsewhere
            assert log_lines[0] == ("start", side)
            assert ("end", side) not in log_lines
            assert log_lines[-2:] == [("start", log_lines[-1][1]), ("end", log_lines[-1][1])]
            assert log_lines[-1][1] != side

    for key, row in rows.items():
        if key[0] == "default":
            continue
        # variant "side" asks for what only the lost node had: a clear failure instead of a queue forever
        _, _, status, execution_id, _, error_type, message = row
        assert status == "failed" and error_type == "ResourceUnsatisfiableError", row
        assert "side=1" in message and "no alive node" in message
        assert all(node == side for _, node in multinode.work_log(marker, execution_id))
    assert any(e for e in outcome["killed"]["while_running"] if "-v1-" in e)
