"""Automatic lanes: plain ``def`` nodes nobody marked, against the same nodes marked and bare Ray tasks.

Prints, in one run, in a fresh Ray cluster:

1. three plain ``def`` nodes that each wait 1 s (a sync LLM client call),
   50 executions at once, 200 executions: WTB with the nodes unmarked (the
   bench finds out that they wait and moves them to an I/O lane), the same
   nodes marked ``io_bound=True``, and each node a bare Ray task; efficiency =
   executions x 3 x 1 s / 50 / wall time (target >= 0.75 for the unmarked
   nodes), plus the first unmarked batch of the driver (it probes each node's
   first calls) and the memory of this cluster's Ray workers during the
   unmarked batch (target <= 1.5 GB);
2. three plain ``def`` nodes that each compute 1 s of CPU, as many executions
   at once as there are CPUs: WTB unmarked (they stay one Ray task per call)
   against bare Ray tasks of the same request; efficiency = CPU seconds of the
   batch / CPUs / wall time (target: at least the bare Ray tasks').

    uv run python benchmarks/auto_lanes.py [--repeat 1]
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _auto_graphs as g  # noqa: E402
from _services import services  # noqa: E402
from dispatch import MemorySampler, _timed  # noqa: E402


def _project(name, factory, concurrency, resources=None):
    from wtb_prefect import ExecutionConfig, RayConfig, WorkflowProject

    execution = {"default_node_resources": resources} if resources is not None else {}
    return WorkflowProject(
        name=name,
        graph_factory=factory,
        execution=ExecutionConfig(
            ray_config=RayConfig(max_concurrent_workflows=concurrency, max_retries=0),
            checkpoint_storage="sqlite",
            **execution,
        ),
    )


@functools.cache
def _bare(fn, num_cpus, memory):
    import ray

    return ray.remote(num_cpus=num_cpus, memory=memory)(fn)


def bare_ray_batch(nodes, cases, concurrency, num_cpus, memory):
    """Each node a bare Ray task, ``concurrency`` executions at once."""
    import ray

    remotes = [_bare(f, num_cpus, memory) for f in nodes]

    def execution(state):
        for node in remotes:
            state = {**state, **ray.get(node.remote(state))}
        return state

    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(execution, cases))


def _lanes_of(batch) -> str:
    """How many node calls of the batch took each lane."""
    counts: dict[str, int] = {}
    for result in batch.results:
        for record in result.nodes:
            counts[record.lane or "driver"] = counts.get(record.lane or "driver", 0) + 1
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


def waiting_row(bench, repeat: int) -> None:
    from wtb_prefect import NodeResourceConfig

    seconds, concurrency, n = 1.0, 50, 200
    ideal = n * 3 * seconds / concurrency
    cases = [{"x": i, "s": seconds} for i in range(n)]
    warm = [{"x": i, "s": 0.05} for i in range(concurrency)]
    marked = NodeResourceConfig(num_cpus=0.05, memory="32MB", io_bound=True)
    bench.register_project(_project("auto_unmarked", g.three_wait_graph, concurrency))
    bench.register_project(_project("auto_marked", g.three_wait_graph, concurrency, marked))
    walls: dict[str, list[float]] = {"unmarked, first batch": [], "unmarked": [], "marked io_bound": [], "bare Ray": []}
    # The driver's first batch of the unmarked nodes finds out where they run (probe calls).
    with MemorySampler() as first_memory:
        start = time.perf_counter()
        batch = bench.run_batch_test("auto_unmarked", [{}], cases, parallelism=concurrency)
        walls["unmarked, first batch"].append(time.perf_counter() - start)
    assert not batch.failed, batch.failed[0].error
    first_lanes = _lanes_of(batch)
    bench.run_batch_test("auto_marked", [{}], warm, parallelism=concurrency)  # its pool started
    memory = None
    for _ in range(repeat):
        with MemorySampler() as sampler:
            start = time.perf_counter()
            batch = bench.run_batch_test("auto_unmarked", [{}], cases, parallelism=concurrency)
            walls["unmarked"].append(time.perf_counter() - start)
        assert not batch.failed, batch.failed[0].error
        memory = sampler
        start = time.perf_counter()
        marked_batch = bench.run_batch_test("auto_marked", [{}], cases, parallelism=concurrency)
        walls["marked io_bound"].append(time.perf_counter() - start)
        assert not marked_batch.failed, marked_batch.failed[0].error
    lanes = _lanes_of(batch)
    nodes = (g.wait_a, g.wait_b, g.wait_c)
    # Last: bare Ray tasks leave a worker process per call that was in flight.
    for _ in range(repeat):
        walls["bare Ray"].append(
            _timed(functools.partial(bare_ray_batch, nodes, cases, concurrency, 0.05, 32 * 1024**2))
        )
    print("\n== three plain def nodes of 1 s, 50 at once, 200 executions ==")
    print("efficiency = 200 x 3 x 1 s / 50 / wall time (end to end); target >= 0.75 for the unmarked nodes")
    for label, values in walls.items():
        print(f"  {label:24s} {ideal / statistics.median(values):6.2f}   (wall {statistics.median(values):6.1f} s)")
    print(f"  lanes of the first unmarked batch: {first_lanes}")
    print(f"  lanes of a later unmarked batch:   {lanes}")
    for label, sampler in (("first unmarked batch", first_memory), ("later unmarked batch", memory)):
        if sampler is not None:
            print(
                f"  Ray workers during the {label}: {sampler.workers} processes, {sampler.uss / 1e9:.2f} GB USS "
                f"({sampler.rss / 1e9:.2f} GB RSS)   (target <= 1.5 GB)"
            )


def computing_row(bench, repeat: int) -> None:
    cpus = os.cpu_count() or 2
    seconds, concurrency, n = 1.0, cpus, 4 * cpus
    ideal = n * 3 * seconds / cpus
    cases = [{"x": i, "s": seconds} for i in range(n)]
    bench.register_project(_project("auto_burn", g.three_burn_graph, concurrency))
    walls: dict[str, list[float]] = {"unmarked (first batch)": [], "unmarked": [], "bare Ray": []}
    for label in ("unmarked (first batch)", *["unmarked"] * repeat):
        start = time.perf_counter()
        batch = bench.run_batch_test("auto_burn", [{}], cases, parallelism=concurrency)
        walls[label].append(time.perf_counter() - start)
        assert not batch.failed, batch.failed[0].error
    lanes = _lanes_of(batch)
    nodes = (g.burn_a, g.burn_b, g.burn_c)
    for _ in range(repeat):  # the request of an unmarked node: 1 CPU, 1 GB
        walls["bare Ray"].append(_timed(functools.partial(bare_ray_batch, nodes, cases, concurrency, 1, 10**9)))
    print(f"\n== three plain def nodes computing 1 s of CPU, {concurrency} at once, {n} executions, {cpus} CPUs ==")
    print(f"efficiency = {n} x 3 x 1 s / {cpus} CPUs / wall time; target: unmarked >= bare Ray")
    for label, values in walls.items():
        print(f"  {label:24s} {ideal / statistics.median(values):6.2f}   (wall {statistics.median(values):6.1f} s)")
    print(f"  lanes of the last unmarked batch: {lanes}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    with services():
        from wtb_prefect import WTBTestBench

        bench = WTBTestBench()
        # The computing row first: the bare Ray tasks of the waiting row leave 50 worker processes behind.
        computing_row(bench, args.repeat)
        waiting_row(bench, args.repeat)


if __name__ == "__main__":
    main()
