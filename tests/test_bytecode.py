"""Install compiles bytecode: no process (CLI, driver, Ray worker) compiles sources on import.

With PYTHONDONTWRITEBYTECODE=1 (set on many container images, and on this
project's CI machine) Python never writes a ``.pyc`` itself, so whatever the
installer did not compile is compiled again, in memory, by every process.

A test session that writes bytecode itself would leave the very ``.pyc`` files
these tests look for and pass whatever the install did, so they refuse to run
in one; and the imports are checked in a child process that cannot write
bytecode and counts every module Python compiles from source.
"""

from __future__ import annotations

import atexit
import importlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# The package itself and the heavy dependencies every run imports.
MODULES = (
    "wtb_prefect.bench",
    "wtb_prefect.cli",
    "prefect.flows",
    "ray.actor",
    "mlflow.tracking.client",
    "langgraph.graph.state",
    "pydantic.main",
)

# Runs in a child with PYTHONDONTWRITEBYTECODE=1: every call of SourceLoader.source_to_code is
# a module whose bytecode was missing or stale, compiled in memory and thrown away at exit.
_COUNT_COMPILES = """
import importlib, json, sys
from importlib import _bootstrap_external as loaders
compiled = []
original = loaders.SourceLoader.source_to_code
def source_to_code(self, data, path, **kwargs):
    compiled.append(str(path))
    return original(self, data, path, **kwargs)
loaders.SourceLoader.source_to_code = source_to_code
for name in sys.argv[1:]:
    importlib.import_module(name)
print(json.dumps({"dont_write_bytecode": sys.dont_write_bytecode, "compiled": compiled}))
"""


def _session_writes_no_bytecode() -> None:
    if not sys.dont_write_bytecode:
        pytest.fail(
            "this pytest session writes .pyc files itself (PYTHONDONTWRITEBYTECODE is not set), so its own imports "
            "would create the bytecode this test checks and it could pass whatever the install did. "
            "Fix: run pytest with PYTHONDONTWRITEBYTECODE=1 (.ci/run sets it)."
        )


def _compiled(source: str | Path) -> bool:
    """A .pyc of ``source`` exists that is not older than the source."""
    cached = Path(importlib.util.cache_from_source(str(source)))
    return cached.is_file() and cached.stat().st_mtime >= Path(source).stat().st_mtime - 1


def _count_compiles() -> subprocess.Popen[str]:
    """The child that imports :data:`MODULES` and reports what it compiled, started when this module is collected.

    Its imports take seconds of one core and need nothing of the session, so
    they run beside the collection and the tests before this one.
    """
    child = subprocess.Popen(
        [sys.executable, "-c", _COUNT_COMPILES, *MODULES],
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    atexit.register(child.kill)  # a session that does not run the test leaves no child behind
    return child


_COUNTING = _count_compiles()


def test_no_import_of_a_run_compiles_a_source() -> None:
    _session_writes_no_bytecode()
    stdout, stderr = _COUNTING.communicate(timeout=300)
    assert _COUNTING.returncode == 0, stderr[-3000:]
    report = json.loads(stdout.strip().splitlines()[-1])
    assert report["dont_write_bytecode"] is True
    compiled = report["compiled"]
    assert not compiled, (
        f"importing {', '.join(MODULES)} compiled {len(compiled)} module(s) from source "
        f"(no bytecode from the install): {compiled[:5]}. Fix: bash scripts/setup.sh"
    )


@pytest.mark.parametrize("name", MODULES)
def test_the_package_and_its_dependencies_are_installed_compiled(name: str) -> None:
    _session_writes_no_bytecode()
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.origin, name
    assert _compiled(spec.origin), f"{name}: no bytecode for {spec.origin}. Fix: bash scripts/setup.sh"
    # every module of the distribution's top package, not just the one imported
    top_spec = importlib.util.find_spec(name.split(".")[0])
    top = Path(next(iter(top_spec.submodule_search_locations)))  # also for namespace packages (langgraph)
    sources = [p for p in top.rglob("*.py") if "tests" not in p.parts][:400]
    missing = [str(p) for p in sources if not _compiled(p)]
    assert not missing, f"{len(missing)} of {len(sources)} sources of {top.name} have no bytecode: {missing[:5]}"


@pytest.mark.integration
@pytest.mark.network
def test_a_node_environment_is_built_with_bytecode(tmp_path: Path) -> None:
    from wtb_prefect import EnvSpec
    from wtb_prefect.run.environments import EnvironmentManager

    env = EnvironmentManager(tmp_path / "envs").ensure(EnvSpec(dependencies=["inflection>=0.5"]), used_by="pyc/node")
    site = next(Path(env.path).glob("lib/python*/site-packages"))
    sources = [p for p in site.rglob("*.py") if p.parent.name != "__pycache__"]
    assert any(p.name == "inflection.py" or p.parent.name == "inflection" for p in sources), sources
    missing = [str(p) for p in sources if not _compiled(p)]
    assert not missing, f"the node environment has sources without bytecode: {missing[:5]}"
