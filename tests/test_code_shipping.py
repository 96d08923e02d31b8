"""What a driver ships to Ray nodes that do not share its files (no cluster needed)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from wtb_prefect.errors import ConfigError
from wtb_prefect.services.code_shipping import (
    CodePayload,
    CodePayloadTooLargeError,
    code_payload,
    merge_runtime_env,
)


@pytest.fixture()
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder with a package and a single-file module, both imported, and a large .venv."""
    root = tmp_path / "proj"
    (root / "mygraphs").mkdir(parents=True)
    (root / "mygraphs" / "__init__.py").write_text("X = 1\n")
    (root / "solo_mod_cs.py").write_text("Y = 2\n")
    (root / ".venv").mkdir()
    (root / ".venv" / "big.bin").write_bytes(b"\0" * 4096)
    other = tmp_path / "elsewhere"
    (other / "helpers_cs").mkdir(parents=True)
    (other / "helpers_cs" / "__init__.py").write_text("Z = 3\n")
    monkeypatch.chdir(root)
    monkeypatch.syspath_prepend(str(other))
    monkeypatch.syspath_prepend(str(root))
    for name in ("mygraphs", "solo_mod_cs", "helpers_cs"):
        sys.modules.pop(name, None)
        importlib.import_module(name)
    yield root
    for name in ("mygraphs", "solo_mod_cs", "helpers_cs"):
        sys.modules.pop(name, None)


def test_ships_the_driver_folder_and_other_source_packages_not_installed_ones(project: Path):
    payload = code_payload(state_dir=project / "state")
    assert payload.working_dir == str(project.resolve())
    assert str((project.parent / "elsewhere" / "helpers_cs").resolve()) in payload.py_modules
    assert not any("site-packages" in p for p in payload.py_modules)  # pytest, pydantic, ... are installed
    assert "/state" in payload.excludes and ".venv" in payload.excludes and ".git" in payload.excludes
    env = payload.runtime_env()
    assert env["working_dir"] == payload.working_dir and env["excludes"] == payload.excludes


def test_size_counts_what_ray_would_pack_and_names_the_folder_over_the_limit(project: Path):
    payload = CodePayload(working_dir=str(project), excludes=[".venv"])
    assert payload.check_size(limit=1024)[str(project)] < 100  # the 4 KiB in .venv is excluded
    (project / "data.bin").write_bytes(b"\1" * 2048)
    with pytest.raises(CodePayloadTooLargeError) as caught:
        payload.check_size(limit=1024)
    assert isinstance(caught.value, ConfigError)
    assert str(project) in str(caught.value) and ".rayignore" in str(caught.value)


def test_user_runtime_env_is_merged_and_a_job_s_own_fields_are_left_to_it():
    ours = {"env_vars": {"PREFECT_API_URL": "u", "A": "1"}, "py_modules": ["/w/wtb_prefect"], "excludes": [".git"]}
    user = {"env_vars": {"A": "2", "B": "3"}, "py_modules": ["/x/lib"], "excludes": ["data"], "pip": ["x==1"]}
    merged = merge_runtime_env(ours, user)
    assert merged["env_vars"] == {"PREFECT_API_URL": "u", "A": "2", "B": "3"}
    assert merged["py_modules"] == ["/w/wtb_prefect", "/x/lib"]
    assert merged["excludes"] == [".git", "data"] and merged["pip"] == ["x==1"]
    in_job = merge_runtime_env(
        {"working_dir": "/w", "env_vars": {"A": "1", "C": "4"}},
        None,
        {"working_dir": "gcs://p.zip", "env_vars": {"A": "9"}},
    )
    assert in_job == {"env_vars": {"C": "4"}}


def test_a_node_env_reaches_nodes_on_other_machines_as_ray_s_uv_env_with_the_exact_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from wtb_prefect.run import environments
    from wtb_prefect.services.ray_cluster import connect

    env = tmp_path / "envs" / "abc"
    (env / "bin").mkdir(parents=True)
    (env / "lock.txt").write_text("numpy==2.4.6\nrank-bm25==0.2.2\n")
    options = {"num_cpus": 1, "runtime_env": {"py_executable": str(env / "bin" / "python"), "env_vars": {"K": "v"}}}
    monkeypatch.setattr(connect, "_files_shared", True)
    assert environments.placed_options(options) is options  # one machine: the driver's env itself
    monkeypatch.setattr(connect, "_files_shared", False)
    placed = environments.placed_options(options)
    assert placed["runtime_env"] == {"env_vars": {"K": "v"}, "uv": {"packages": ["numpy==2.4.6", "rank-bm25==0.2.2"]}}
    assert placed["num_cpus"] == 1 and "py_executable" in options["runtime_env"]  # the plan's options untouched


def test_a_failed_env_setup_on_a_node_is_an_environment_build_error_naming_the_node_and_the_fix():
    from wtb_prefect.run.environments import EnvironmentBuildError, environment_setup_error

    error = environment_setup_error(
        RuntimeError("Failed to set up runtime environment.\nuv: No solution found for wtb-localonly"),
        "iso/probe:bm25",
        {"runtime_env": {"uv": {"packages": ["wtb-localonly==0.1"]}}},
    )
    assert isinstance(error, EnvironmentBuildError) and error.used_by == "iso/probe:bm25"
    text = str(error)
    assert "iso/probe:bm25" in text and "wtb-localonly==0.1" in text and "No solution found" in text
    assert "Fix:" in text and "EnvSpec.dependencies" in text


def test_file_tracking_is_refused_when_nodes_cannot_see_the_state_folder(monkeypatch: pytest.MonkeyPatch):
    from wtb_prefect.config import FileTrackingConfig
    from wtb_prefect.services.ray_cluster import check_files_reachable, connect

    tracking = FileTrackingConfig(enabled=True, tracked_paths=["./outputs/"])
    monkeypatch.setattr(connect, "_files_shared", True)
    check_files_reachable("p", tracking)  # one machine: allowed
    monkeypatch.setattr(connect, "_files_shared", False)
    check_files_reachable("p", FileTrackingConfig())  # not tracking: allowed
    with pytest.raises(ConfigError) as caught:
        check_files_reachable("p", tracking)
    assert "file_tracking.enabled" in str(caught.value) and "WTB_SHIP_CODE=never" in str(caught.value)
