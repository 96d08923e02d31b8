"""Driver memory of a large batch against a small one.

Runs a batch of 10 executions and then one of 1,000 executions (2 trivial
nodes each, every node a Prefect task run on Ray) in the same process, and
prints how much the driver's resident memory grew over each, and the peak.

Target (DESIGN.md): the 1,000-execution batch grows the driver by < 200 MB.

    .venv/bin/python benchmarks/memory.py [--executions 1000]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _dispatch_graphs as g  # noqa: E402
from _services import services  # noqa: E402
from dispatch import _project  # noqa: E402

MB = 1024**2


class PeakRSS:
    """Samples this process's resident memory every 50 ms while running."""

    def __init__(self) -> None:
        import psutil

        self._process = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        return self._process.memory_info().rss

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(0.05)

    def __enter__(self) -> PeakRSS:
        self.peak = self.rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executions", type=int, default=1000)
    args = parser.parse_args()

    with services():
        from wtb_prefect import WTBTestBench

        bench = WTBTestBench()
        bench.register_project(_project("bench_memory", g.two_node_graph, 20))
        bench.run_batch_test("bench_memory", [{}], [{"x": i} for i in range(40)], parallelism=20)  # warm-up
        figures = []
        for n in (10, args.executions):
            cases = [{"x": i} for i in range(n)]
            with PeakRSS() as sampler:
                before = sampler.rss()
                start = time.perf_counter()
                batch = bench.run_batch_test("bench_memory", [{}], cases, parallelism=20)
                wall = time.perf_counter() - start
                after = sampler.rss()
            assert len(batch) == n and not batch.failed
            figures.append((n, (after - before) / MB, (sampler.peak - before) / MB, wall))
            del batch

        print("\n== driver memory (resident set) per batch ==")
        for n, grown, peak, wall in figures:
            print(f"{n:6d} executions: grew {grown:7.1f} MB, peak +{peak:7.1f} MB, {wall:6.1f} s")
        print(f"1,000 vs 10: grew {figures[1][1] - figures[0][1]:.1f} MB more   (target < 200 MB)")


if __name__ == "__main__":
    main()
