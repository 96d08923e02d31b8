"""Dispatch overhead and batch efficiency of WTB on Prefect + Ray.

Prints, in one run and against baselines measured in the same process:

1. per-node cost in a batch of 40 executions x 2 trivial nodes (8 at once):
   WTB (every node a Prefect task run whose body runs on Ray with resources),
   a bare Ray task per node doing the same work (same concurrency), and plain
   ``graph.batch``;
2. batch efficiency: 100 executions of 3 I/O-bound 100 ms nodes, 20 at once,
   against the ideal executions x path length x node time / concurrency, end
   to end and for the executions alone, with the same batch of bare Ray tasks
   beside it and the CPU each kind of process spent per node.

Targets (DESIGN.md): <= 25 ms per node on 2 cores and <= 10x a bare Ray task;
efficiency >= 0.8 of ideal. Medians of --repeat runs after warm-up runs.

With ``--lanes``, instead (issue 15), in a fresh Ray cluster: LLM-shaped nodes
(``async def`` nodes that wait, on the I/O lanes' actors) at 1 s x 50
concurrent x 200 executions (target >= 0.7 and above bare Ray tasks), 1 s x 20
x 100 (>= 0.9) and 100 ms x 20 x 100 (>= 0.5), each beside the same batch of
bare Ray tasks (one worker process per call in flight), of plain asyncio
(the node coroutines gathered in one process) and of bare Prefect task runs
(the node coroutines as async Prefect tasks of one flow, no LangGraph, no Ray:
the floor of "every node a Prefect task run"), plus the memory of this
cluster's Ray workers during the 50-concurrent batch (target <= 1.5 GB) and
the CPU per node, by process, of the WTB and bare-Prefect 100 ms batches.

    uv run python benchmarks/dispatch.py [--repeat 3]
    uv run python benchmarks/dispatch.py --lanes [--repeat 3]
    uv run python benchmarks/dispatch.py --split [--repeat 3]

With ``--split``: the 100 ms row at 100 and 300 executions, alternating, to
tell what each node costs (CPU by process, wall time) from what each batch
costs once; the executions' efficiency at any batch size follows.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
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


@functools.cache
def _bare(fn):
    """``fn`` as a Ray remote function with the resources of the WTB projects, built once."""
    import ray

    return ray.remote(num_cpus=0.05, memory=32 * 1024**2)(fn)


def bare_ray_batch(cases, concurrency):
    """Each execution calls its nodes as bare Ray tasks, `concurrency` executions at once."""
    import ray

    add_one, double = _bare(g.add_one), _bare(g.double)

    def execution(state):
        state = {**state, **ray.get(add_one.remote(state))}
        return {**state, **ray.get(double.remote(state))}

    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(execution, cases))


def bare_ray_io_batch(cases, concurrency):
    """The I/O batch with each node a bare Ray task: what Ray alone achieves here."""
    import ray

    nodes = [_bare(f) for f in (g.io_a, g.io_b, g.io_c)]

    def execution(state):
        for node in nodes:
            state = {**state, **ray.get(node.remote(state))}
        return state

    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(execution, cases))


def _process_kind(proc, me: int) -> str:
    cmd = " ".join(proc.info["cmdline"] or [])
    if proc.pid == me:
        return "driver (flow run, LangGraph)"
    if "prefect" in cmd and "server" in cmd:
        return "Prefect server"
    if "default_worker" in cmd or cmd.startswith("ray::"):
        return "Ray workers"
    if "raylet" in cmd or "gcs_server" in cmd or "/ray/" in cmd:
        return "Ray system (raylet, GCS)"
    return "other"


def cpu_seconds() -> dict[str, float]:
    """CPU seconds used so far by each kind of process on this machine."""
    import os

    import psutil

    totals: dict[str, float] = {}
    for proc in psutil.process_iter(["cmdline", "cpu_times"]):
        times = proc.info["cpu_times"]
        if times is None:
            continue
        kind = _process_kind(proc, os.getpid())
        totals[kind] = totals.get(kind, 0.0) + times.user + times.system
    return totals


LANE_ROWS = [  # (node seconds, executions at once, executions, target efficiency)
    (1.0, 50, 200, 0.7),
    (1.0, 20, 100, 0.9),
    (0.1, 20, 100, 0.5),
]


def _llm_project(name, concurrency):
    from wtb_prefect import ExecutionConfig, NodeResourceConfig, RayConfig, WorkflowProject

    return WorkflowProject(
        name=name,
        graph_factory=g.three_llm_graph,
        execution=ExecutionConfig(
            ray_config=RayConfig(max_concurrent_workflows=concurrency, max_retries=0),
            default_node_resources=NodeResourceConfig(num_cpus=0.05, memory="32MB"),
            checkpoint_storage="sqlite",
        ),
    )


def bare_ray_wait_batch(cases, concurrency):
    """Each node a bare Ray task (sync twin of the async node): one worker process per call in flight."""
    import ray

    nodes = [_bare(f) for f in (g.wait_a, g.wait_b, g.wait_c)]

    def execution(state):
        for node in nodes:
            state = {**state, **ray.get(node.remote(state))}
        return state

    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(execution, cases))


def asyncio_batch(cases, concurrency):
    """The node coroutines themselves, `concurrency` executions at once in one event loop."""
    import asyncio

    async def run():
        gate = asyncio.Semaphore(concurrency)

        async def execution(state):
            async with gate:
                for node in (g.llm_a, g.llm_b, g.llm_c):
                    state = {**state, **await node(state)}
                return state

        return await asyncio.gather(*(execution(c) for c in cases))

    return asyncio.run(run())


@functools.cache
def _prefect_node_tasks():
    """The three node coroutines as async Prefect tasks, built once (inside ``services()``)."""
    from prefect import task
    from prefect.cache_policies import NO_CACHE

    return [
        task(fn, name=fn.__name__, cache_policy=NO_CACHE, persist_result=False) for fn in (g.llm_a, g.llm_b, g.llm_c)
    ]


def prefect_tasks_batch(cases, concurrency):
    """Each node a bare async Prefect task run of one flow, `concurrency` executions at once.

    No LangGraph, no Ray, no checkpoints: what one Prefect task run per node
    costs by itself (the engine's states and events, the server recording
    them), the floor under any design that keeps every node a task run.
    """
    import asyncio

    from prefect import flow

    nodes = _prefect_node_tasks()

    @flow(name="bench-prefect-tasks", persist_result=False)
    async def batch(cases):
        gate = asyncio.Semaphore(concurrency)

        async def execution(state):
            async with gate:
                for node in nodes:
                    state = {**state, **await node(state)}
                return state

        return await asyncio.gather(*(execution(c) for c in cases))

    return asyncio.run(batch(cases))


def _cpu_per_node(fn, nodes: int) -> tuple[object, float, dict[str, float]]:
    """What ``fn()`` returns, its wall seconds and the CPU ms per node each kind of process spent on it.

    The server records what a batch sent it after the batch: it is waited for
    until idle before and after ``fn()``, so each batch pays for its own
    recording and none of the one before (a fixed wait was not enough after a
    large batch).
    """
    _settle()
    before = cpu_seconds()
    start = time.perf_counter()
    result = fn()
    wall = time.perf_counter() - start
    _settle()
    after = cpu_seconds()
    return result, wall, {k: 1000 * (after[k] - before.get(k, 0.0)) / nodes for k in after}


_SHORT_KINDS = {  # kind of process (see _process_kind) -> column name
    "driver (flow run, LangGraph)": "driver",
    "Prefect server": "server",
    "Ray workers": "Ray workers",
    "Ray system (raylet, GCS)": "raylet+GCS",
}


def cpu_cells(runs: list[dict[str, float]]) -> str:
    """The median CPU ms per node of each kind of process over ``runs``, one cell each."""
    return "  ".join(
        f"{short} {statistics.median(r.get(kind, 0.0) for r in runs):5.1f}" for kind, short in _SHORT_KINDS.items()
    )


def _print_cpu(label: str, runs: list[dict[str, float]]) -> None:
    """One line: the median CPU ms per node of each kind of process, and of all of them."""
    total = statistics.median(sum(r.values()) for r in runs)
    print(f"  {label:20s} {cpu_cells(runs)}  all {total:5.1f} ms")


def _ray_workers():
    """This driver's Ray worker processes (descendants only: other clusters on the machine are not ours)."""
    import psutil

    procs = []
    for proc in psutil.Process().children(recursive=True):
        try:
            cmd = " ".join(proc.cmdline())
        except psutil.Error:
            continue
        if cmd.startswith("ray::") or "default_worker.py" in cmd:
            procs.append(proc)
    return procs


class MemorySampler:
    """The most memory (RSS and USS summed) this driver's Ray workers held while it ran."""

    def __init__(self, every: float = 0.5) -> None:
        import threading

        self.rss = self.uss = 0
        self.workers = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every,), daemon=True)

    def _run(self, every):
        import psutil

        while not self._stop.wait(every):
            rss = uss = 0
            procs = _ray_workers()
            for proc in procs:
                try:
                    info = proc.memory_full_info()
                except psutil.Error:
                    continue
                rss += info.rss
                uss += info.uss
            self.rss, self.uss, self.workers = max(self.rss, rss), max(self.uss, uss), max(self.workers, len(procs))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def warm_cases(concurrency: int) -> list[dict]:
    """A short batch run before timing: pools started, bodies imported, flows registered."""
    return [{"x": i, "s": 0.05} for i in range(concurrency)]


def lane_rows(args) -> None:
    """The issue-15 rows: LLM-shaped nodes on I/O lanes against bare Ray tasks, plain asyncio and bare Prefect."""
    with services():
        from wtb_prefect import WTBTestBench
        from wtb_prefect.batch.execute import task_run_log_level
        from wtb_prefect.settings import get_settings

        bench = WTBTestBench()
        print("\n== LLM-shaped nodes (3 async nodes per execution, each waiting s seconds), on 2 cores ==")
        print("efficiency = executions x 3 x s / concurrency / wall time; WTB on I/O lanes (async actors)")
        print(
            f"{'s, at once, executions':24s} {'WTB e2e':>8s} {'WTB exec':>8s} {'bare Ray':>8s} {'asyncio':>8s}"
            f" {'Prefect':>8s} {'target':>6s}"
        )
        memory = None
        # Every WTB batch first, the baselines after; the bare Ray tasks leave an idle
        # worker process per call that was in flight (50), which keep spending CPU long
        # after their batch and would slow whatever is measured next.
        e2e, inner, cpu = {}, {}, {"WTB": [], "bare Prefect tasks": []}
        for seconds, concurrency, n, _ in LANE_ROWS:
            name = f"bench_llm_{concurrency}"
            if name not in bench.list_projects():
                bench.register_project(_llm_project(name, concurrency))
            cases = [{"x": i, "s": seconds} for i in range(n)]
            warm = warm_cases(concurrency)
            bench.run_batch_test(name, [{}], warm, parallelism=concurrency)  # pools started, bodies imported
            run = functools.partial(bench.run_batch_test, name, [{}], cases, parallelism=concurrency)
            for _ in range(args.repeat):
                sampler = MemorySampler() if concurrency == 50 and memory is None else contextlib.nullcontext()
                with sampler:
                    batch, wall, per_node = _cpu_per_node(run, 3 * n)
                e2e.setdefault(seconds, []).append(wall)
                if seconds < 1:  # the CPU-bound row: where each node's CPU goes
                    cpu["WTB"].append(per_node)
                if isinstance(sampler, MemorySampler):
                    memory = sampler
                assert not batch.failed, batch.failed[0].error
                inner.setdefault(seconds, []).append(batch.duration_s)
        # Then the bare Prefect task runs (their idle cost is nil), the bare Ray tasks last.
        prefect = {}
        with task_run_log_level(get_settings().task_run_log_level):  # as quiet as WTB's batches
            for seconds, concurrency, n, _ in LANE_ROWS:
                cases = [{"x": i, "s": seconds} for i in range(n)]
                prefect_tasks_batch(warm_cases(concurrency), concurrency)  # once before timing
                for _ in range(args.repeat):
                    _, wall, per_node = _cpu_per_node(functools.partial(prefect_tasks_batch, cases, concurrency), 3 * n)
                    prefect.setdefault(seconds, []).append(wall)
                    if seconds < 1:
                        cpu["bare Prefect tasks"].append(per_node)
        for seconds, concurrency, n, target in LANE_ROWS:
            cases = [{"x": i, "s": seconds} for i in range(n)]
            plain = [_timed(functools.partial(asyncio_batch, cases, concurrency)) for _ in range(args.repeat)]
            bare = [_timed(functools.partial(bare_ray_wait_batch, cases, concurrency)) for _ in range(args.repeat)]
            ideal = n * 3 * seconds / concurrency
            walls = (e2e[seconds], inner[seconds], bare, plain, prefect[seconds])
            cells = " ".join(f"{ideal / statistics.median(x):8.2f}" for x in walls)
            print(f"{f'{seconds:g} s x {concurrency} x {n}':24s} {cells} {target:6.2f}", flush=True)
        seconds, concurrency, _, target = next(row for row in LANE_ROWS if row[0] < 1)
        if cpu["WTB"]:
            budget_ms = 1000 * 2 * seconds / concurrency / target  # 2 cores' CPU per node at the target
            print(f"\nCPU ms per node of the {seconds * 1000:g} ms batches, by process (medians; at efficiency")
            print(f"{target:g} the two cores hold {budget_ms:.0f} ms of CPU per node in all):")
            for label, runs in cpu.items():
                _print_cpu(label, runs)
        if memory is not None:
            print(
                f"\nRay workers of this cluster during the 50-concurrent WTB batch: {memory.workers} processes, "
                f"{memory.uss / 1e9:.2f} GB USS ({memory.rss / 1e9:.2f} GB RSS)   (target <= 1.5 GB)"
            )


def _settle(limit_s: float = 20.0) -> None:
    """Wait until the Prefect server has recorded what it was sent (its CPU idle for 0.5 s)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        before = cpu_seconds().get("Prefect server", 0.0)
        time.sleep(0.5)
        if cpu_seconds().get("Prefect server", 0.0) - before < 0.025:
            return


def cost_split(args) -> None:
    """Per node or per batch? The 100 ms row at 100 and 300 executions, alternating.

    The difference between the two sizes is what each further node costs (CPU
    by process, wall time); what is left at 100 executions is the batch's fixed
    cost (its flow run, its records at the end). Efficiency at any size follows:
    ideal / (fixed wall + executions x marginal wall per execution).
    """
    sizes = (100, 300)
    seconds, concurrency = 0.1, 20
    with services():
        from wtb_prefect import WTBTestBench

        bench = WTBTestBench()
        bench.register_project(_llm_project("bench_llm_20", concurrency))
        bench.run_batch_test("bench_llm_20", [{}], warm_cases(concurrency), parallelism=concurrency)
        runs: dict[int, list[tuple[float, dict[str, float]]]] = {n: [] for n in sizes}
        for _ in range(args.repeat):
            for n in sizes:
                cases = [{"x": i, "s": seconds} for i in range(n)]
                run = functools.partial(bench.run_batch_test, "bench_llm_20", [{}], cases, parallelism=concurrency)
                _, wall, cpu_ms = _cpu_per_node(run, 1)  # per batch
                runs[n].append((wall, cpu_ms))
    small, large = sizes
    nodes = 3 * (large - small)

    def cpu(n: int, kind: str) -> float:
        return statistics.median(cpu_ms.get(kind, 0.0) for _, cpu_ms in runs[n])

    def wall(n: int) -> float:
        return statistics.median(seconds_ for seconds_, _ in runs[n])

    print(
        f"\n== per node or per batch: {seconds * 1000:g} ms nodes x {concurrency} at once, {small} and {large} executions =="
    )
    print(f"{'process':14s} {'ms per node':>12s} {'s per batch':>12s}")
    for kind, short in _SHORT_KINDS.items():
        marginal = (cpu(large, kind) - cpu(small, kind)) / nodes
        fixed = cpu(small, kind) - 3 * small * marginal
        print(f"{short:14s} {marginal:12.1f} {fixed / 1000:12.2f}")
    wall_small, wall_large = wall(small), wall(large)
    per_execution = (wall_large - wall_small) / (large - small)
    fixed_wall = wall_small - small * per_execution
    print(f"wall: {per_execution * 1000:.1f} ms per execution, {fixed_wall:.2f} s per batch;")
    print(
        f"efficiency of the executions alone at any size: {3 * seconds / concurrency / per_execution:.2f}"
        f" (end to end at {small}: {3 * seconds * small / concurrency / wall_small:.2f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--executions", type=int, default=100)
    parser.add_argument("--lanes", action="store_true", help="the LLM-shaped rows on I/O lanes (issue 15)")
    parser.add_argument("--split", action="store_true", help="the 100 ms row's cost per node and per batch")
    args = parser.parse_args()
    if args.split:
        cost_split(args)
        return
    if args.lanes:
        lane_rows(args)
        return

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

        for _ in range(2):  # warm-up: workers started, functions loaded on them
            bench.run_batch_test("bench_dispatch", [{}], cases, parallelism=8)
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
        # Warm-up: Ray grows its worker pool over the first batches, up to the
        # soft limit wtb_prefect sets (32); each new worker costs seconds of CPU.
        for _ in range(4):
            bench.run_batch_test("bench_io", [{}], io_cases, parallelism=20)
        bare_ray_io_batch(io_cases, 20)
        walls, inner, bare_walls, cpu = [], [], [], []
        for _ in range(args.repeat):
            before = cpu_seconds()
            start = time.perf_counter()
            batch = bench.run_batch_test("bench_io", [{}], io_cases, parallelism=20)
            walls.append(time.perf_counter() - start)
            time.sleep(1.0)  # let the server record what the batch sent it
            after = cpu_seconds()
            cpu.append({k: after[k] - before.get(k, 0.0) for k in after})
            inner.append(batch.duration_s)
            bare_walls.append(_timed(lambda: bare_ray_io_batch(io_cases, 20)))
        wall, run_phase, bare_wall = (statistics.median(x) for x in (walls, inner, bare_walls))
        print(f"\n== batch efficiency ({n} executions x 3 I/O nodes of 100 ms, 20 at once) ==")
        print(f"ideal (executions x path x node time / concurrency)  {ideal:6.2f} s")
        print(f"WTB, run_batch_test end to end        {wall:6.2f} s   efficiency {ideal / wall:.2f}   (target >= 0.8)")
        print(f"WTB, executions only (no flow set-up) {run_phase:6.2f} s   efficiency {ideal / run_phase:.2f}")
        print(f"bare Ray tasks, same batch            {bare_wall:6.2f} s   efficiency {ideal / bare_wall:.2f}")
        print(f"runs end to end: {', '.join(f'{w:.2f}' for w in walls)} s")
        nodes_run = n * 3
        print(
            f"\nCPU per node of the WTB batch, by process (median of runs; 2 cores = {2 * ideal / 0.8 * 1000 / nodes_run:.1f} ms"
        )
        print("of CPU per node in all at efficiency 0.8):")
        kinds = sorted({k for c in cpu for k in c}, key=lambda k: -statistics.median(c.get(k, 0.0) for c in cpu))
        for kind in kinds:
            per_node = 1000 * statistics.median(c.get(kind, 0.0) for c in cpu) / nodes_run
            if per_node >= 0.05:
                print(f"  {kind:32s} {per_node:6.2f} ms")
        total = 1000 * statistics.median(sum(c.values()) for c in cpu) / nodes_run
        print(f"  {'all processes':32s} {total:6.2f} ms")


if __name__ == "__main__":
    main()
