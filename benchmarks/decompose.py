"""Where a node's CPU goes: the 100 ms row rebuilt from its parts, one part added at a time.

Each execution is one ``graph.ainvoke`` of the three ``async def`` nodes of
``dispatch.py --lanes`` (100 ms each), 20 at once in one event loop of one
async flow, 100 executions. The parts, added in turn:

1. LangGraph alone (no task run, no Ray, no checkpoints);
2. each node an async Prefect task run (``run_task_async``);
3. the task's body awaited on one Ray async actor;
4. ``AsyncSqliteSaver`` checkpoints.

Each line prints the efficiency (ideal / wall) and the CPU per node by
process (medians of --repeat batches after one warm-up batch). Compare the
last line with ``dispatch.py --split`` (WTB itself). No WTB code runs here:
this is the floor each part sets for any design built of them.

    uv run python benchmarks/decompose.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _dispatch_graphs as g  # noqa: E402
from _services import services  # noqa: E402
from dispatch import _cpu_per_node, cpu_cells  # noqa: E402

SECONDS, CONCURRENCY, EXECUTIONS = 0.1, 20, 100
STEPS = [  # (label, Prefect task runs, Ray actor, checkpoints)
    ("LangGraph alone", False, False, False),
    ("+ a Prefect task run per node", True, False, False),
    ("+ the body on a Ray actor", True, True, False),
    ("+ SQLite checkpoints", True, True, True),
]


def _node(fn, lane, prefect: bool):
    """The LangGraph node for ``fn``: its body awaited directly or on ``lane``, as a task run or not."""
    from prefect import task
    from prefect.cache_policies import NO_CACHE
    from prefect.task_engine import run_task_async

    async def body(state):
        return await (fn(state) if lane is None else lane.call.remote(fn, state))

    body.__name__ = fn.__name__
    as_task = task(body, name=fn.__name__, cache_policy=NO_CACHE, persist_result=False)

    async def node(state):
        if not prefect:
            return await body(state)
        final = await run_task_async(task=as_task, parameters={"state": state}, return_type="state")
        return final.data.result

    return node


def _batch_flow(lane, prefect: bool, checkpoints: bool, db: str):
    """An async flow running ``cases`` as ``graph.ainvoke`` calls, CONCURRENCY at once."""
    import contextlib

    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
    from langgraph.graph import END, START, StateGraph
    from prefect import flow

    @flow(name="bench-decompose", persist_result=False)
    async def batch(cases):
        saver_cm = AsyncSqliteSaver.from_conn_string(db) if checkpoints else contextlib.nullcontext()
        async with saver_cm as saver:
            builder = StateGraph(g.Call)
            for name, fn in (("a", g.llm_a), ("b", g.llm_b), ("c", g.llm_c)):
                builder.add_node(name, _node(fn, lane, prefect))
            builder.add_edge(START, "a")
            builder.add_edge("a", "b")
            builder.add_edge("b", "c")
            builder.add_edge("c", END)
            graph = builder.compile(checkpointer=saver)
            gate = asyncio.Semaphore(CONCURRENCY)
            run_id = time.time_ns()

            async def execution(i, case):
                async with gate:
                    return await graph.ainvoke(case, {"configurable": {"thread_id": f"{run_id}-{i}"}})

            return await asyncio.gather(*(execution(i, c) for i, c in enumerate(cases)))

    return batch


def _run(batch, cases):
    return asyncio.run(batch(cases))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with services(), tempfile.TemporaryDirectory(prefix="wtb-decompose-") as tmp:
        import ray

        from wtb_prefect.batch.execute import task_run_log_level
        from wtb_prefect.settings import get_settings

        @ray.remote(num_cpus=0.05, max_concurrency=200)
        class Lane:
            async def call(self, fn, state):
                return await fn(state)

        lane = Lane.remote()
        cases = [{"x": i, "s": SECONDS} for i in range(EXECUTIONS)]
        ideal = EXECUTIONS * 3 * SECONDS / CONCURRENCY
        print(
            f"\n== {SECONDS * 1000:g} ms nodes x {CONCURRENCY} at once x {EXECUTIONS}: CPU ms per node, by process =="
        )
        with task_run_log_level(get_settings().task_run_log_level):
            for label, prefect, on_ray, checkpoints in STEPS:
                batch = _batch_flow(lane if on_ray else None, prefect, checkpoints, str(Path(tmp) / "checkpoints.db"))
                asyncio.run(batch(cases[:CONCURRENCY]))  # warm-up
                walls, cpu = [], []
                for _ in range(args.repeat):
                    out, wall, per_node = _cpu_per_node(functools.partial(_run, batch, cases), 3 * EXECUTIONS)
                    assert [s["x"] for s in out] == [c["x"] + 6 for c in cases]
                    walls.append(wall)
                    cpu.append(per_node)
                print(f"{label:32s} efficiency {ideal / statistics.median(walls):4.2f}  {cpu_cells(cpu)}", flush=True)


if __name__ == "__main__":
    main()
