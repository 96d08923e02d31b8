"""The adapters over private library modules still find what they use in the installed versions.

Each check goes through the adapter, so when a release moves a private name
the test fails with the adapter's own error: the library, its installed
version and what changed (:class:`wtb_prefect.private_api.PrivateAPIChanged`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from wtb_prefect.private_api import PrivateAPIChanged, installed_version, private_name
from wtb_prefect.services import prefect_sqlite, ray_private


def test_a_moved_private_name_is_reported_with_library_version_and_what_changed() -> None:
    with pytest.raises(PrivateAPIChanged) as moved:
        private_name("ray", "ray._private.no_such_module")
    message = str(moved.value)
    assert f"ray {installed_version('ray')}: module ray._private.no_such_module is gone" in message
    assert "Fix:" in message and isinstance(moved.value, ImportError)  # callers with a fallback catch ImportError
    with pytest.raises(PrivateAPIChanged, match=r"langgraph \S+: langgraph._internal._runnable.Gone is gone"):
        private_name("langgraph", "langgraph._internal._runnable", "Gone")


def test_ray_private_names_are_where_the_adapter_reaches_them(tmp_path: Path) -> None:
    assert ray_private.package_size_limit() > 0
    assert ray_private.job_config_env_var()
    assert ray_private.ray_address_file().name
    assert callable(ray_private.worker_module().print_worker_logs)
    assert ray_private.accelerator_manager("GPU").get_current_node_num_accelerators() >= 0
    private_name("ray", "ray._raylet", "Config").initialize  # refresh_config's target  # noqa: B018
    assert hasattr(private_name("ray", "ray._private.ray_constants"), "RAY_ENABLE_UV_RUN_RUNTIME_ENV")
    private_name("ray", ray_private.DEFAULT_WORKER_MODULE)  # what a node environment must import


def test_ray_package_walk_applies_excludes_and_gitignore(tmp_path: Path) -> None:
    (tmp_path / "keep.py").write_text("x = 1\n")
    (tmp_path / "skip.log").write_text("log\n")
    (tmp_path / "ignored").mkdir()
    (tmp_path / "ignored" / "big.bin").write_text("0" * 100)
    (tmp_path / ".gitignore").write_text("ignored/\n")
    seen: list[str] = []
    ray_private.walk_package(
        tmp_path, ["*.log"], lambda p: seen.append(p.relative_to(tmp_path).as_posix()), include_gitignore=True
    )
    assert "keep.py" in seen and "skip.log" not in seen and "ignored/big.bin" not in seen, seen


def test_ray_worker_mode_is_read_in_a_driver() -> None:
    import ray

    from wtb_prefect.worker.ray_private import in_worker_process

    assert in_worker_process(ray) is False  # this process is no Ray worker


def test_langgraph_runnable_wrapper_is_where_the_adapter_reaches_it() -> None:
    from langgraph.graph import START, StateGraph
    from typing_extensions import TypedDict

    from wtb_prefect.run.langgraph_private import RunnableCallable

    class State(TypedDict):
        x: int

    graph = StateGraph(State).add_node("n", lambda s: {"x": s["x"] + 1}).add_edge(START, "n").compile()
    node = graph.builder.nodes["n"].runnable
    assert isinstance(node, RunnableCallable), (installed_version("langgraph"), type(node))


def test_prefect_server_patch_targets_are_there() -> None:
    prefect_sqlite.check_patch_targets()


ADAPTERS = {"private_api.py", "services/ray_private.py", "worker/ray_private.py", "run/langgraph_private.py"}
PRIVATE = ("ray._private", "ray._raylet", "ray._common", "langgraph._internal")


def test_private_modules_are_reached_only_through_the_adapters() -> None:
    package = Path(__file__).resolve().parents[1] / "wtb_prefect"
    found = [
        f"{path.relative_to(package)}:{number}: {line.strip()}"
        for path in sorted(package.rglob("*.py"))
        if path.relative_to(package).as_posix() not in ADAPTERS
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if any(name in line for name in PRIVATE)
    ]
    assert not found, "use the adapter module (wtb_prefect/services/ray_private.py, run/langgraph_private.py):\n" + (
        "\n".join(found)
    )
