"""CPU that cost capture adds per node run, in-process (no Ray, no Prefect).

A node body calls a real ``ChatOpenAI`` against the stand-in provider (in a
child process, so its CPU is not counted here) with a 100 ms latency, the
100 ms row of ``dispatch.py``. Each body runs through the worker wrapper
(``call_observed``) twice per round: with usage capture (what every node run
gets) and with capture replaced by a no-op (the baseline), alternating so
that drift hits both. Three bodies: one plain call, one streaming call, and a
small LangGraph subgraph (three steps, one of them calling the model), plus a
body that calls no model (what capture costs a node that is not an LLM node).

Prints the median CPU per node (this process's user + system time) with and
without capture, and the ratio; the target is at most 1.05.

With ``--batch``, instead: the 100 ms row end to end (a batch through
Prefect and Ray in a throw-away state folder, 100 executions x 3 ``async def``
nodes, 20 at once, on the I/O lanes), each node awaiting a real
``ChatOpenAI`` call to the stand-in with a 100 ms latency. Batches with
capture on and with capture replaced by a no-op alternate (ABBA), in the
driver (its node scope) and in the Ray workers alike: the no-op is switched
on by a flag file every process checks per node run, in both modes, so the
check costs both sides the same. Prints the median CPU per node (process
user + system time) of the driver and of this cluster's Ray workers, with
and without capture, and their ratios; it checks that every node of a
capture batch booked its call and no node of a no-op batch did.

Run: .venv/bin/python benchmarks/cost_capture.py [--calls 40] [--rounds 5] [--latency 0.1]
     .venv/bin/python benchmarks/cost_capture.py --batch [--rounds 5] [--executions 100]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TypedDict

from langchain_openai import ChatOpenAI
from langgraph.graph import END, START, StateGraph

import wtb_prefect.worker.usage as usage_module
from wtb_prefect.testing import StandInProvider
from wtb_prefect.worker.call import call_observed

CAPTURE = usage_module.capturing_usage

FLAG_ENV = "WTB_BENCH_NO_CAPTURE_FLAG"
"""The flag file's path (inherited by the Ray workers): while the file exists, capture is a no-op."""
BASE_URL_ENV = "WTB_BENCH_STAND_IN_URL"


@contextlib.contextmanager
def _no_capture(sink: Any = None) -> Any:
    yield {} if sink is None else sink


def _install_switch() -> None:
    """Route capture through the flag file, in this process (the driver, or a Ray worker importing this module).

    The worker wrapper looks ``capturing_usage`` up on its module at each node
    run; the driver's node scope imported it by name, so it is replaced there too.
    """
    flag = os.environ.get(FLAG_ENV)
    if not flag or getattr(usage_module.capturing_usage, "switched", False):
        return

    def switched(sink: Any = None) -> Any:
        return _no_capture(sink) if os.path.exists(flag) else CAPTURE(sink)

    switched.switched = True  # type: ignore[attr-defined]
    usage_module.capturing_usage = switched
    scope = sys.modules.get("wtb_prefect.run.node_scope")
    if scope is not None:
        scope.capturing_usage = switched


_install_switch()


class S(TypedDict, total=False):
    q: str
    a: str
    b: str


def bodies(base_url: str) -> dict[str, Any]:
    llm = ChatOpenAI(base_url=base_url, api_key="stand-in", model="gpt-4o-mini", stream_usage=True, max_retries=0)

    def plain(state: dict) -> dict:
        return {"a": llm.invoke(state["q"]).content}

    def streaming(state: dict) -> dict:
        return {"a": "".join(str(c.content) for c in llm.stream(state["q"]))}

    graph = StateGraph(S)
    graph.add_node("prep", lambda s: {"b": s["q"].upper()})
    graph.add_node("ask", lambda s: {"a": llm.invoke(s["b"]).content})
    graph.add_node("post", lambda s: {"a": s["a"][:40]})
    graph.add_edge(START, "prep")
    graph.add_edge("prep", "ask")
    graph.add_edge("ask", "post")
    graph.add_edge("post", END)
    sub = graph.compile()

    def subgraph(state: dict) -> dict:
        return {"a": sub.invoke({"q": state["q"]})["a"]}

    def no_model(state: dict) -> dict:
        time.sleep(0.1)  # waits like an API call, calls no model
        return {"a": state["q"]}

    return {"plain call": plain, "streaming call": streaming, "subgraph + call": subgraph, "no model call": no_model}


def cpu_ms_per_node(body: Any, calls: int) -> float:
    t0 = time.process_time()
    for i in range(calls):
        call_observed(body, ({"q": f"question {i}"},), {})
    return (time.process_time() - t0) / calls * 1000


# --- the 100 ms row end to end (--batch) ---------------------------------------------------------


class Ask(TypedDict, total=False):
    x: int
    r: int
    a: str


_models: dict[int, ChatOpenAI] = {}


def _model() -> ChatOpenAI:
    """One client per event loop (an async client belongs to the loop it first ran on)."""
    loop = id(asyncio.get_running_loop())
    if loop not in _models:
        _models[loop] = ChatOpenAI(
            base_url=os.environ[BASE_URL_ENV], api_key="stand-in", model="gpt-4o-mini", max_retries=0
        )
    return _models[loop]


async def _ask(state: Ask, step: str) -> dict:
    # the round is in the prompt: no call repeats one of an earlier batch
    message = await _model().ainvoke(f"round {state['r']} case {state['x']} step {step}")
    return {"a": str(message.content)[:40]}


async def ask_a(state: Ask) -> dict:
    return await _ask(state, "a")


async def ask_b(state: Ask) -> dict:
    return await _ask(state, "b")


async def ask_c(state: Ask) -> dict:
    return await _ask(state, "c")


def three_call_graph() -> Any:
    """Three ``async def`` nodes, each one chat-model call, in a chain."""
    graph = StateGraph(Ask)
    graph.add_node("a", ask_a)
    graph.add_node("b", ask_b)
    graph.add_node("c", ask_c)
    graph.add_edge(START, "a")
    graph.add_edge("a", "b")
    graph.add_edge("b", "c")
    graph.add_edge("c", END)
    return graph.compile()


def _worker_cpu_s() -> float:
    """CPU seconds of this driver's Ray worker processes (its descendants: no other cluster's)."""
    import psutil

    total = 0.0
    for proc in psutil.Process().children(recursive=True):
        try:
            cmd = " ".join(proc.cmdline())
            times = proc.cpu_times()
        except psutil.Error:
            continue
        if cmd.startswith("ray::") or "default_worker.py" in cmd:
            total += times.user + times.system
    return total


def _driver_cpu_s() -> float:
    times = os.times()
    return times.user + times.system


def batch_row(args: argparse.Namespace) -> None:
    """The 100 ms row end to end, with capture on and off, alternating."""
    here = Path(__file__).resolve().parent
    sys.path.insert(0, str(here))
    # Ray workers import the graph from the module, not from __main__, and so install the switch
    import cost_capture as shipped
    from _services import services
    from dispatch import _settle

    n, concurrency = args.executions, 20
    nodes = 3 * n
    with (
        tempfile.TemporaryDirectory(prefix="wtb-bench-flag-") as flag_dir,
        StandInProvider(in_process=False, latency_s=args.latency) as provider,
    ):
        flag = Path(flag_dir) / "no-capture"
        os.environ[FLAG_ENV] = str(flag)  # set before Ray starts, so its workers inherit both
        os.environ[BASE_URL_ENV] = provider.base_url
        with services():
            import wtb_prefect.run.node_scope  # noqa: F401  (the driver's scope, replaced by the switch)
            from wtb_prefect import ExecutionConfig, NodeResourceConfig, RayConfig, WorkflowProject, WTBTestBench

            shipped._install_switch()
            bench = WTBTestBench()
            bench.register_project(
                WorkflowProject(
                    name="bench_cost_capture",
                    graph_factory=shipped.three_call_graph,
                    execution=ExecutionConfig(
                        ray_config=RayConfig(max_concurrent_workflows=concurrency, max_retries=0),
                        default_node_resources=NodeResourceConfig(num_cpus=0.05, memory="32MB"),
                        checkpoint_storage="sqlite",
                    ),
                )
            )
            batches = 0

            def run(capture: bool) -> tuple[float, float, float]:
                nonlocal batches
                batches += 1
                if capture:
                    flag.unlink(missing_ok=True)
                else:
                    flag.touch()
                cases = [{"x": i, "r": batches} for i in range(n)]
                _settle()
                driver, workers, start = _driver_cpu_s(), _worker_cpu_s(), time.perf_counter()
                batch = bench.run_batch_test("bench_cost_capture", [{}], cases, parallelism=concurrency)
                wall = time.perf_counter() - start
                _settle()
                driver, workers = _driver_cpu_s() - driver, _worker_cpu_s() - workers
                assert not batch.failed, batch.failed[0].error
                booked = sum(1 for r in batch for node in r.nodes if node.usage)
                want = nodes if capture else 0
                assert booked == want, f"capture={capture}: {booked} of {nodes} nodes booked usage, expected {want}"
                provider.reset()  # the log is not needed: keep the stand-in's memory flat
                return 1000 * driver / nodes, 1000 * workers / nodes, wall

            for capture in (True, False):  # warm-up: worker pools and lanes grown, bodies imported
                run(capture)
            on: list[tuple[float, float, float]] = []
            off: list[tuple[float, float, float]] = []
            for i in range(args.rounds):
                for capture in (True, False) if i % 2 else (False, True):
                    (on if capture else off).append(run(capture))
            flag.unlink(missing_ok=True)

    def med(runs: list[tuple[float, float, float]], k: int) -> float:
        return statistics.median(r[k] for r in runs)

    def both(runs: list[tuple[float, float, float]]) -> float:
        return statistics.median(r[0] + r[1] for r in runs)

    print(
        f"\n== the {args.latency * 1000:g} ms row end to end: {n} executions x 3 ChatOpenAI nodes, {concurrency} at once =="
    )
    print(f"CPU ms per node, medians of {args.rounds} batches each (alternating, after one warm-up batch each)")
    print(f"{'process':18s} {'without':>9s} {'with':>9s} {'ratio':>7s}")
    for label, a, b in (
        ("driver", med(off, 0), med(on, 0)),
        ("Ray workers", med(off, 1), med(on, 1)),
        ("driver + workers", both(off), both(on)),
    ):
        print(f"{label:18s} {a:7.2f}ms {b:7.2f}ms {b / a:7.3f}")
    # each round's two batches ran back to back: the median of their ratios is the least hit by drift
    paired = [
        (statistics.median(b[0] / a[0] for a, b in zip(off, on)), "driver"),
        (statistics.median(b[1] / a[1] for a, b in zip(off, on)), "Ray workers"),
        (statistics.median((b[0] + b[1]) / (a[0] + a[1]) for a, b in zip(off, on)), "driver + workers"),
    ]
    print("median of the rounds' paired ratios: " + ", ".join(f"{label} {r:.3f}" for r, label in paired))
    print(f"wall s per batch: without {med(off, 2):.2f}, with {med(on, 2):.2f}")
    print("per batch (driver, workers ms per node):")
    print("  without: " + ", ".join(f"{d:.2f}/{w:.2f}" for d, w, _ in off))
    print("  with:    " + ", ".join(f"{d:.2f}/{w:.2f}" for d, w, _ in on))
    print("target: ratio <= 1.05 (the cost-capture row of docs/performance.md)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=40, help="node runs per measurement")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (medians are printed)")
    parser.add_argument("--latency", type=float, default=0.1, help="the stand-in's latency per request (s)")
    parser.add_argument("--batch", action="store_true", help="the 100 ms row end to end through Prefect and Ray")
    parser.add_argument("--executions", type=int, default=100, help="executions per batch (--batch only)")
    args = parser.parse_args()
    if args.batch:
        batch_row(args)
        return
    with StandInProvider(in_process=False, latency_s=args.latency) as provider:
        named = bodies(provider.base_url)
        for body in named.values():  # warm up: imports, connections, the configure hook
            for capture in (CAPTURE, _no_capture):
                usage_module.capturing_usage = capture
                cpu_ms_per_node(body, 3)
        print(f"CPU per node in this process, median of {args.rounds} rounds x {args.calls} calls")
        print(f"{'body':18s} {'without':>9s} {'with':>9s} {'ratio':>7s}")
        for name, body in named.items():
            with_capture, without = [], []
            for _ in range(args.rounds):
                usage_module.capturing_usage = _no_capture
                without.append(cpu_ms_per_node(body, args.calls))
                usage_module.capturing_usage = CAPTURE
                with_capture.append(cpu_ms_per_node(body, args.calls))
            a, b = statistics.median(without), statistics.median(with_capture)
            print(f"{name:18s} {a:7.3f}ms {b:7.3f}ms {b / a:7.3f}")
        usage_module.capturing_usage = CAPTURE
        booked = provider.usage_by_model()
        print(f"(the stand-in served {sum(r['calls'] for r in booked.values())} calls)")
    print("target: ratio <= 1.05 (the cost-capture row of docs/performance.md)")


if __name__ == "__main__":
    main()
