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

Run: .venv/bin/python benchmarks/cost_capture.py [--calls 40] [--rounds 5] [--latency 0.1]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from typing import Any, TypedDict

from langchain_openai import ChatOpenAI
from langgraph.graph import END, START, StateGraph

import wtb_prefect.worker.usage as usage_module
from wtb_prefect.testing import StandInProvider
from wtb_prefect.worker.call import call_observed

CAPTURE = usage_module.capturing_usage


@contextlib.contextmanager
def _no_capture(sink: Any = None) -> Any:
    yield {} if sink is None else sink


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=40, help="node runs per measurement")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (medians are printed)")
    parser.add_argument("--latency", type=float, default=0.1, help="the stand-in's latency per request (s)")
    args = parser.parse_args()
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
