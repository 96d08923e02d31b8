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
