"""Dispatch overhead and batch efficiency of WTB on Prefect + Ray.

Prints, in one run and against baselines measured in the same process:

1. per-node cost in a batch of 40 executions x 2 trivial nodes (8 at once):
   WTB (every node a Prefect task run whose body runs on Ray with resources),
   a bare Ray task per node doing the same work (same concurrency), and plain
   ``graph.batch``;
2. batch efficiency: 100 executions of 3 I/O-bound 100 ms nodes, 20 at once,
   against the ideal executions x path length x node time / concurrency.

Targets (DESIGN.md): <= 25 ms per node on 2 cores and <= 10x a bare Ray task;
efficiency >= 0.8 of ideal. Medians of --repeat runs after one warm-up run.

    uv run python benchmarks/dispatch.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _dispatch_graphs as g  # noqa: E402
from _services import services  # noqa: E402


def _project(name, factory, concurrency):
    from wtb_prefect import ExecutionConfig, NodeResourceConfig, RayConfig, WorkflowProject

    return WorkflowProject(
        name=name,
        graph_factory=factory,
        execution=ExecutionConfig(
            ray_config=RayConfig(max_concurrent_workflows=concurrency, max_retries=0),
            default_node_resources=NodeResourceConfig(num_cpus=0.05, memory="32MB"),
            checkpoint_storage="sqlite",
        ),
    )


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bare_ray_batch(cases, concurrency):
    """Each execution calls its nodes as bare Ray tasks, `concurrency` executions at once."""
    import ray

    add_one = ray.remote(num_cpus=0.05, memory=32 * 1024**2)(g.add_one)
    double = ray.remote(num_cpus=0.05, memory=32 * 1024**2)(g.double)

    def execution(state):
        state = {**state, **ray.get(add_one.remote(state))}
        return {**state, **ray.get(double.remote(state))}

    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(execution, cases))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--executions", type=int, default=100)
    args = parser.parse_args()

    with services():
        from wtb_prefect import WTBTestBench

        bench = WTBTestBench()
        overhead_project = _project("bench_dispatch", g.two_node_graph, 8)
        io_project = _project("bench_io", g.three_io_graph, 20)
        bench.register_project(overhead_project)
        bench.register_project(io_project)

        # 1. per-node cost, 40 executions x 2 nodes, 8 at once
        cases = [{"x": i} for i in range(40)]
        nodes = len(cases) * 2
        plain_graph = g.two_node_graph()
        expected = plain_graph.batch(cases)

        def wtb_run():
            batch = bench.run_batch_test("bench_dispatch", [{}], cases, parallelism=8)
            assert [r.final_state for r in batch] == expected, "WTB must equal graph.batch"
            wtb_run.latencies = [n.duration_s for r in batch for n in r.nodes]

        bench.run_batch_test("bench_dispatch", [{}], cases[:8], parallelism=8)  # warm-up
        bare_ray_batch(cases, 8)
        wtb, bare, plain, latency = [], [], [], []
        for _ in range(args.repeat):
            wtb.append(_timed(wtb_run) / nodes)
            latency.append(statistics.median(wtb_run.latencies))
            bare.append(_timed(lambda: bare_ray_batch(cases, 8)) / nodes)
            plain.append(_timed(lambda: plain_graph.batch(cases, config={"max_concurrency": 8})) / nodes)
        m_wtb, m_bare, m_plain = (statistics.median(x) for x in (wtb, bare, plain))
        print("\n== per-node cost in a batch (40 executions x 2 nodes, 8 at once, 2 cores) ==")
        print(f"WTB (Prefect task run + Ray, resources)   {1000 * m_wtb:8.2f} ms/node   (target <= 25 ms)")
        print(f"bare Ray task                             {1000 * m_bare:8.2f} ms/node")
        print(f"plain graph.batch                         {1000 * m_plain:8.3f} ms/node")
        print(f"WTB overhead vs bare Ray                  {m_wtb / m_bare:8.1f} x       (target <= 10x)")
        print(f"WTB node round trip (median latency)      {1000 * statistics.median(latency):8.2f} ms")

        # 2. batch efficiency: N executions x 3 I/O nodes of 100 ms, 20 at once
        n = args.executions
        io_cases = [{"x": i} for i in range(n)]
        ideal = n * 3 * g.NODE_SECONDS / 20
        bench.run_batch_test("bench_io", [{}], io_cases[:20], parallelism=20)  # warm-up: 20 workers
        walls = []
        for _ in range(args.repeat):
            walls.append(_timed(lambda: bench.run_batch_test("bench_io", [{}], io_cases, parallelism=20)))
        wall = statistics.median(walls)
        print(f"\n== batch efficiency ({n} executions x 3 I/O nodes of 100 ms, 20 at once) ==")
        print(f"ideal {ideal:.2f} s   WTB median wall {wall:.2f} s   efficiency {ideal / wall:.2f}   (target >= 0.8)")
        print(f"runs: {', '.join(f'{w:.2f}' for w in walls)} s")


if __name__ == "__main__":
    main()
