"""The package's layers: no import cycle between subpackages, light worker imports, stable public names."""

from __future__ import annotations

import itertools
import subprocess
import sys

import grimp

import wtb_prefect

SUBPACKAGES = [
    "testing",
    "cli",
    "bench",
    "integrations",
    "batch",
    "run",
    "analysis",
    "define",
    "services",
    "worker",
    "results",
    "settings",
    "config",
    "plugins",
    "pricing",
    "private_api",
    "errors",
]


def test_no_import_cycle_between_subpackages() -> None:
    graph = grimp.build_graph("wtb_prefect")
    cycles = []
    for a, b in itertools.combinations(SUBPACKAGES, 2):
        forward = graph.find_shortest_chain(importer=f"wtb_prefect.{a}", imported=f"wtb_prefect.{b}", as_packages=True)
        backward = graph.find_shortest_chain(importer=f"wtb_prefect.{b}", imported=f"wtb_prefect.{a}", as_packages=True)
        if forward and backward:
            cycles.append(f"{a} <-> {b}: {' -> '.join(forward)} and {' -> '.join(backward)}")
    assert not cycles, "\n".join(cycles)
    # every module of the package belongs to a layer (a new top-level module must be placed in one)
    top = {m.split(".")[1] for m in graph.modules if m.count(".") >= 1}
    assert top <= set(SUBPACKAGES), sorted(top - set(SUBPACKAGES))


def test_public_names_are_unchanged() -> None:
    before = {
        "BatchTestResult",
        "EnvSpec",
        "EnvironmentConfig",
        "ExecutionConfig",
        "ExecutionResult",
        "FileTrackingConfig",
        "NodeRecord",
        "NodeResourceConfig",
        "RayConfig",
        "WTBError",
        "WTBTestBench",
        "WorkflowProject",
        "log_node_metrics",
        "workspace",
    }
    assert before <= set(wtb_prefect.__all__)
    for name in wtb_prefect.__all__:
        assert getattr(wtb_prefect, name) is not None


def test_a_worker_imports_neither_prefect_nor_mlflow_nor_ray() -> None:
    code = (
        "import sys, wtb_prefect.worker.call, wtb_prefect.worker.trace, wtb_prefect.worker.workspace; "
        "print(sorted(m for m in ('prefect', 'mlflow', 'ray', 'langgraph') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
