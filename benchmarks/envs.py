"""uv environments: reuse of an unchanged spec and rebuild from a warm uv cache.

Prints, against baselines measured in the same run (medians, interleaved):

1. reuse: ``EnvironmentManager.ensure`` of a spec whose env exists, by a fresh
   manager (what a new process or a second batch does). Target <= 0.2 s.
2. rebuild from the warm uv cache: ``ensure`` into an empty folder, against
   ``uv venv`` + ``uv pip install`` of the same spec typed by hand. Target
   <= 1.5x the manual run.
3. with ``--ray``: the first task in a new env on Ray (a new worker process
   started on the env's interpreter) against the first task in a new worker of
   the driver's own environment, and a warm task in the env.

    uv run python benchmarks/envs.py [--deps rank-bm25>=0.2] [--repeat 5] [--ray]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _manual(uv: str, deps: list[str], folder: Path) -> float:
    start = time.perf_counter()
    subprocess.run([uv, "venv", "--quiet", "--python", sys.executable, str(folder)], check=True)
    subprocess.run([uv, "pip", "install", "--quiet", "--python", str(folder / "bin" / "python"), *deps], check=True)
    return time.perf_counter() - start


def _ours(spec, root: Path) -> tuple[float, object]:
    from wtb_prefect.run.environments import EnvironmentManager

    manager = EnvironmentManager(root)
    start = time.perf_counter()
    env = manager.ensure(spec, used_by="benchmark")
    elapsed = time.perf_counter() - start
    assert manager.build_count == 1
    return elapsed, env


def _reuse(spec, root: Path) -> float:
    from wtb_prefect.run.environments import EnvironmentManager

    manager = EnvironmentManager(root)
    start = time.perf_counter()
    manager.ensure(spec, used_by="benchmark")
    elapsed = time.perf_counter() - start
    assert manager.build_count == 0
    return elapsed


def _ray_first_task(env, repeat: int) -> None:
    import ray

    def where() -> str:
        return sys.prefix

    ray.init(address="local", num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    try:
        task = ray.remote(num_cpus=0.1)(where)
        ray.get(task.remote())  # the cluster is up and one worker exists
        base, in_env, warm = [], [], []
        for i in range(repeat):
            # a new env_vars value makes a new runtime env, so each call starts a new worker
            for runtime_env, bucket in (
                ({"env_vars": {"WTB_BENCH": f"b{i}"}}, base),
                ({**env.ray_runtime_env(), "env_vars": {"WTB_BENCH": f"e{i}"}}, in_env),
            ):
                start = time.perf_counter()
                prefix = ray.get(task.options(runtime_env=runtime_env).remote())
                bucket.append(time.perf_counter() - start)
                if bucket is in_env:
                    assert prefix == env.path, prefix
                    start = time.perf_counter()
                    ray.get(task.options(runtime_env=runtime_env).remote())
                    warm.append(time.perf_counter() - start)
    finally:
        ray.shutdown()
    b, e, w = statistics.median(base), statistics.median(in_env), statistics.median(warm)
    print(f"first task, new worker in the driver's env : {b:7.3f} s")
    print(f"first task, new worker in the uv env       : {e:7.3f} s   ({e / b:.2f}x)")
    print(f"next task in the uv env (warm worker)      : {w:7.3f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deps", nargs="+", default=["rank-bm25>=0.2"])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--ray", action="store_true", help="also time the first task in a new env on Ray")
    args = parser.parse_args()

    from wtb_prefect import EnvSpec
    from wtb_prefect.run.environments import _uv_bin

    uv = _uv_bin()
    spec = EnvSpec(dependencies=args.deps)
    with tempfile.TemporaryDirectory(prefix="wtb-bench-envs-") as tmp:
        work = Path(tmp)
        _manual(uv, args.deps, work / "warmup")  # fills the uv cache
        manual, rebuild, reuse = [], [], []
        env = None
        for i in range(args.repeat):
            manual.append(_manual(uv, args.deps, work / f"manual{i}"))
            seconds, env = _ours(spec, work / f"ours{i}")
            rebuild.append(seconds)
            reuse.extend(_reuse(spec, work / f"ours{i}") for _ in range(3))
        m, r, u = statistics.median(manual), statistics.median(rebuild), statistics.median(reuse)
        print(f"spec: dependencies={args.deps}; {args.repeat} runs each, medians; lock: {list(env.lock)}")
        print(f"manual `uv venv` + `uv pip install`        : {m:7.3f} s")
        print(f"rebuild from warm uv cache (ensure)        : {r:7.3f} s   ({r / m:.2f}x manual; target <= 1.5x)")
        print(f"reuse of the unchanged spec (fresh manager): {u:7.4f} s   (target <= 0.2 s)")
        if args.ray:
            _ray_first_task(env, max(1, min(args.repeat, 3)))


if __name__ == "__main__":
    main()
