"""Seconds to the first result: the start-up figures of issue 16, in one run, beside a plain-Python baseline.

    .venv/bin/python benchmarks/startup.py [--repeat 3] [--idle 60]

Prints (wall seconds; medians of ``--repeat`` runs where repeated):

* plain: the quickstart graph run by ``graph.invoke`` in a fresh Python process (the baseline);
* ``wtb --help`` (target <= 1 s);
* cold ``wtb run`` of the quickstart, nothing running, fresh state folder (target <= 25 s);
* bad input from cold: a GPU request on a CPU-only machine, rejected with exit code 2
  (target <= 10 s), and whether a Prefect server was started for it (it must not be);
* warm ``wtb run`` of the quickstart after ``wtb up`` (target <= 3x plain);
* the idle CPU of the embedded server over ``--idle`` seconds (target <= 1% of a core).

Every command runs as a user would run it, in its own process, on throw-away
state folders; every service it starts is stopped at the end. The machine may
be shared: the load average is printed with the figures, and ratios are
against the baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CASE = json.dumps({"query": "What is LangGraph?", "expected": "langgraph"})
PLAIN = (
    "from examples.quickstart.project import qa_graph\n"
    "print(qa_graph().invoke({'query': 'What is LangGraph?'})['answer'])\n"
)
GPU_PROJECT = "benchmarks._gpu_project:build_project"


def _env(home: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "RAY_ADDRESS", "WTB_"))}
    env.update(WTB_HOME=home, PYTHONPATH=str(REPO), COLUMNS="200")
    return env


_last_output = ""
_last_cpu = 0.0


def _timed(command: list[str], env: dict[str, str], expect: int = 0) -> float:
    global _last_output, _last_cpu
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    elapsed = time.perf_counter() - started
    if done.returncode != expect:
        raise SystemExit(f"{' '.join(command)} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    _last_output = done.stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    _last_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed


def _node_seconds(node: str) -> float:
    """The seconds `wtb run` printed for ``node`` (its first node's include the job's Ray worker start)."""
    for line in _last_output.splitlines():
        cells = [c.strip() for c in line.strip("│┃ ").split("│")]
        if cells and cells[0] == node:
            return float(cells[-1])
    return float("nan")


def _wtb(*args: str) -> list[str]:
    return [str(BIN / "wtb"), *args]


def _server_pid(home: str) -> int | None:
    state = Path(home) / "prefect/server.json"
    return json.loads(state.read_text())["pid"] if state.is_file() else None


def _cpu_percent(pid: int, seconds: float) -> float:
    """CPU of a process and its children over ``seconds``, in % of one core."""
    import psutil

    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]

    def total() -> float:
        return sum(sum(p.cpu_times()[:2]) for p in procs if p.is_running())

    before = total()
    time.sleep(seconds)
    return 100.0 * (total() - before) / seconds


def _median(command: list[str], env: dict[str, str], repeat: int = 1, expect: int = 0) -> tuple[float, float]:
    """Median wall and CPU seconds (the command and the children it waited for) of ``repeat`` runs."""
    runs = []
    for _ in range(repeat):
        wall = _timed(command, env, expect)
        runs.append((wall, _last_cpu))
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--idle", type=float, default=60.0)
    args = parser.parse_args()
    rows: list[tuple[str, float, float, str]] = []
    load = [os.getloadavg()[0]]
    quickstart = _wtb("run", "examples.quickstart.project:build_project", "--case", CASE)
    with tempfile.TemporaryDirectory(prefix="wtb-startup-") as tmp:
        plain = _median([sys.executable, "-c", PLAIN], _env(f"{tmp}/plain"), args.repeat)
        rows.append(("plain Python: quickstart graph.invoke (baseline)", *plain, ""))
        rows.append(("wtb --help", *_median(_wtb("--help"), _env(f"{tmp}/help"), args.repeat), "<= 1 s"))

        # bad input from cold: nothing running, a GPU request on this CPU-only machine
        gpu_home = f"{tmp}/gpu"
        rejected = _median(_wtb("run", GPU_PROJECT, "--case", CASE), _env(gpu_home), expect=2)
        started = _server_pid(gpu_home) is not None
        rows.append((f"bad input from cold: GPU request rejected (server started: {started})", *rejected, "<= 10 s"))

        # cold: nothing running, fresh state folder (leaves the server it starts: stopped below)
        cold_home = f"{tmp}/cold"
        try:
            rows.append(("cold wtb run (nothing running)", *_median(quickstart, _env(cold_home)), "<= 25 s"))
        finally:
            subprocess.run(_wtb("down"), env=_env(cold_home), capture_output=True)

        # warm: services kept up by `wtb up`
        warm_home = f"{tmp}/warm"
        env = _env(warm_home)
        try:
            rows.append(("wtb up (server and Ray head in parallel)", *_median(_wtb("up"), env), ""))
            warm, first_node = [], []
            for _ in range(args.repeat):
                warm.append((_timed(quickstart, env), _last_cpu))
                first_node.append(_node_seconds("retriever") - _node_seconds("generator"))
            load.append(os.getloadavg()[0])
            walls = ", ".join(f"{w:.1f}" for w, _ in warm)
            rows.append(
                (
                    f"warm wtb run, services up (runs: {walls})",
                    statistics.median(w for w, _ in warm),
                    statistics.median(c for _, c in warm),
                    "<= 3x plain",
                )
            )
            rows.append(
                (
                    "  of which: this run's Ray worker start (1st node - 2nd node)",
                    statistics.median(first_node),
                    float("nan"),
                    "",
                )
            )
            pid = _server_pid(warm_home)
            time.sleep(10)  # let the last run's events settle
            idle = _cpu_percent(pid, args.idle) if pid else float("nan")
        finally:
            subprocess.run(_wtb("down"), env=env, capture_output=True)
    load.append(os.getloadavg()[0])
    width = max(len(r[0]) for r in rows)
    print(f"{'figure':<{width}}  {'wall s':>7}  {'x plain':>7}  {'CPU s':>6}  {'x plain':>7}  target")
    for name, wall, cpu, target in rows:
        print(f"{name:<{width}}  {wall:7.2f}  {wall / plain[0]:7.1f}  {cpu:6.2f}  {cpu / plain[1]:7.1f}  {target}")
    idle_name = f"idle embedded server CPU over {args.idle:.0f} s (% of one core)"
    print(f"{idle_name:<{width}}  {idle:7.2f}  {'':>7}  {'':>6}  {'':>7}  <= 1%")
    print(
        f"load average (1 min) at start, after the warm runs, at the end: {', '.join(f'{x:.1f}' for x in load)} "
        f"on {os.cpu_count()} cores. CPU s: the command and the children it waited for (not the services)."
    )


if __name__ == "__main__":
    main()
