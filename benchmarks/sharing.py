"""Node-call sharing: sharing off vs on vs a warm cross-batch cache, in one run.

Workload: a 3-node graph of 1 s I/O nodes (fetch -> draft -> polish), 10
variants that differ only at the last node, 20 cases, 20 executions at once
(200 executions, 600 node calls). Reports node bodies run, wall time, and the
driver's and the Prefect server's CPU per node call, for:

* off: ``node_cache="off"``, every call runs (600 bodies);
* on: ``node_cache="batch"`` (the default), identical calls run once (240 bodies);
* persistent, cold: ``node_cache="persistent"`` on an empty cache (fills it);
* warm: the same batch again on the filled cache (0 bodies).

Targets: 240 vs 600 bodies; wall on <= 0.55x off; warm <= 0.25x off; a reused
call costs no more dispatch CPU (driver + server) than a computed one.

    .venv/bin/python benchmarks/sharing.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _sharing_graphs as g  # noqa: E402
from _services import services  # noqa: E402


def cpu_seconds(server_port: str) -> dict[str, float]:
    """CPU seconds used so far by this driver and by this benchmark's Prefect server (the
    machine may run other servers: only the one on ``server_port`` counts)."""
    import os

    import psutil

    totals = {"driver": 0.0, "server": 0.0}
    for proc in psutil.process_iter(["cmdline", "cpu_times"]):
        times, cmd = proc.info["cpu_times"], " ".join(proc.info["cmdline"] or [])
        if times is None:
            continue
        if proc.pid == os.getpid():
            totals["driver"] += times.user + times.system
        elif "server" in cmd and f"--port {server_port}" in cmd:
            totals["server"] += times.user + times.system
    return totals


CASES = 20
VARIANTS = 10
AT_ONCE = 20


def _project(name: str, node_cache: str):
    from wtb_prefect import ExecutionConfig, NodeResourceConfig, RayConfig, WorkflowProject

    project = WorkflowProject(
        name=name,
        graph_factory=g.three_io_graph,
        state_schema=g.Doc,
        execution=ExecutionConfig(
            ray_config=RayConfig(max_concurrent_workflows=AT_ONCE, max_retries=0),
            default_node_resources=NodeResourceConfig(num_cpus=0.05, memory="32MB"),
            checkpoint_storage="memory",
            node_cache=node_cache,
        ),
    )
    for i, fn in enumerate(g.POLISHERS[1:], start=1):
        project.register_variant(node="polish", name=f"p{i}", implementation=fn)
    return project


def _measure(bench, name: str, cases, matrix, port: str) -> dict:
    before = cpu_seconds(port)
    start = time.perf_counter()
    batch = bench.run_batch_test(name, matrix, cases, parallelism=AT_ONCE)
    wall = time.perf_counter() - start
    time.sleep(1.0)  # let the server record what the batch sent it
    after = cpu_seconds(port)
    cpu = {k: after[k] - before.get(k, 0.0) for k in after}
    assert not batch.failed, batch.failed[0].error
    calls = batch.node_calls()
    records = [n for r in batch.results for n in r.nodes]
    return {
        "batch": batch,
        "wall": wall,
        "bodies": calls["computed"],
        "reused": calls["reused"],
        "nodes": len(records),
        "driver": cpu["driver"],
        "server": cpu["server"],
        "finals": sorted((r.variant_label, r.case_id, r.final_state["final"]) for r in batch.results),
    }


def main() -> None:
    with services() as url:
        port = url.rsplit(":", 1)[1].split("/")[0]
        from wtb_prefect import WTBTestBench

        bench = WTBTestBench()
        projects = {mode: _project(f"bench_sharing_{mode}", mode) for mode in ("off", "batch", "persistent")}
        for project in projects.values():
            bench.register_project(project)
        cases = [{"x": i} for i in range(CASES)]
        matrix = [{}] + [{"polish": f"p{i}"} for i in range(1, VARIANTS)]
        # Warm-up: Ray grows its worker pool; a small batch of each project loads the functions.
        for mode in ("off", "batch"):
            bench.run_batch_test(f"bench_sharing_{mode}", matrix[:2], cases[: AT_ONCE // 2], parallelism=AT_ONCE)

        runs = {
            "off": _measure(bench, "bench_sharing_off", cases, matrix, port),
            "on": _measure(bench, "bench_sharing_batch", cases, matrix, port),
            "persistent, cold": _measure(bench, "bench_sharing_persistent", cases, matrix, port),
            "warm cache": _measure(bench, "bench_sharing_persistent", cases, matrix, port),
        }
        base = runs["off"]
        for name, run in runs.items():
            assert run["finals"] == base["finals"], f"{name}: results differ from sharing off"
        print(
            f"\n== node-call sharing: 3 nodes x 1 s, {VARIANTS} variants differing at the last node, "
            f"{CASES} cases, {AT_ONCE} at once =="
        )
        print(
            f"{'':18s} {'bodies':>7s} {'reused':>7s} {'wall s':>7s} {'x off':>6s} "
            f"{'driver ms/call':>15s} {'server ms/call':>15s}"
        )
        for name, run in runs.items():
            print(
                f"{name:18s} {run['bodies']:7d} {run['reused']:7d} {run['wall']:7.2f} {run['wall'] / base['wall']:6.2f} "
                f"{1000 * run['driver'] / run['nodes']:15.2f} {1000 * run['server'] / run['nodes']:15.2f}"
            )
        warm, off = runs["warm cache"], runs["off"]
        hit = 1000 * (warm["driver"] + warm["server"]) / warm["nodes"]
        computed = 1000 * (off["driver"] + off["server"]) / off["nodes"]
        print(
            f"\ndispatch CPU (driver + server) per reused call {hit:.2f} ms vs per computed call {computed:.2f} ms "
            f"({hit / computed:.2f}x)"
        )
        print("targets: bodies 240 vs 600; wall on <= 0.55x off; warm <= 0.25x off; reused <= computed dispatch CPU")
        print("results of every run equal those with sharing off")


if __name__ == "__main__":
    main()
