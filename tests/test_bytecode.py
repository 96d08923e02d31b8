"""Install compiles bytecode: no process (CLI, driver, Ray worker) compiles sources on import.

With PYTHONDONTWRITEBYTECODE=1 (set on many container images, and on this
project's CI machine) Python never writes a ``.pyc`` itself, so whatever the
installer did not compile is compiled again, in memory, by every process.
"""

from __future__ import annotations

import importlib
import importlib.util
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


def _compiled(source: str | Path) -> bool:
    """A .pyc of ``source`` exists that is not older than the source."""
    cached = Path(importlib.util.cache_from_source(str(source)))
    return cached.is_file() and cached.stat().st_mtime >= Path(source).stat().st_mtime - 1


@pytest.mark.parametrize("name", MODULES)
def test_the_package_and_its_dependencies_are_installed_compiled(name: str) -> None:
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
def test_a_node_environment_is_built_with_bytecode(tmp_path: Path) -> None:
    from wtb_prefect import EnvSpec
    from wtb_prefect.run.environments import EnvironmentManager

    env = EnvironmentManager(tmp_path / "envs").ensure(EnvSpec(dependencies=["inflection>=0.5"]), used_by="pyc/node")
    site = next(Path(env.path).glob("lib/python*/site-packages"))
    sources = [p for p in site.rglob("*.py") if p.parent.name != "__pycache__"]
    assert any(p.name == "inflection.py" or p.parent.name == "inflection" for p in sources), sources
    missing = [str(p) for p in sources if not _compiled(p)]
    assert not missing, f"the node environment has sources without bytecode: {missing[:5]}"
