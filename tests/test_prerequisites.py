"""A test marked with a prerequisite the machine lacks fails (never skips) and says how to provide it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.support import prerequisites
from wtb_prefect.services.ports import free_port


def _item(*markers: str) -> SimpleNamespace:
    return SimpleNamespace(
        nodeid="tests/test_x.py::test_y", get_closest_marker=lambda name: object() if name in markers else None
    )


@pytest.fixture(autouse=True)
def _fresh_checks() -> Iterator[None]:
    for check in (prerequisites.postgres_problem, prerequisites.chromium_binary, prerequisites.network_problem):
        check.cache_clear()
    yield
    for check in (prerequisites.postgres_problem, prerequisites.chromium_binary, prerequisites.network_problem):
        check.cache_clear()


def test_postgres_not_answering_fails_naming_the_fix(monkeypatch) -> None:
    monkeypatch.setattr(prerequisites, "POSTGRES_URL", f"postgresql://postgres@127.0.0.1:{free_port()}/test")
    with pytest.raises(pytest.fail.Exception, match=r"needs postgres: PostgreSQL is not usable .*Fix: start"):
        prerequisites.check_before_setup(_item("postgres"))  # type: ignore[arg-type]


def test_no_chromium_binary_fails_naming_the_install(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(prerequisites, "_apt_running", lambda: False)
    with pytest.raises(pytest.fail.Exception, match=r"needs chromium: no chromium binary.*apt-get install -y chromium"):
        prerequisites.check_before_setup(_item("chromium"))  # type: ignore[arg-type]


def test_an_index_that_does_not_answer_fails_naming_the_index(monkeypatch) -> None:
    index = f"http://127.0.0.1:{free_port()}/simple"
    monkeypatch.setenv("UV_DEFAULT_INDEX", index)
    with pytest.raises(pytest.fail.Exception, match=f"needs network: the package index {index} does not answer"):
        prerequisites.check_before_setup(_item("network"))  # type: ignore[arg-type]


def test_unmarked_tests_are_not_checked(monkeypatch) -> None:
    monkeypatch.setattr(prerequisites, "POSTGRES_URL", f"postgresql://postgres@127.0.0.1:{free_port()}/test")
    prerequisites.check_before_setup(_item())  # type: ignore[arg-type]


def test_every_prerequisite_marker_is_registered(pytestconfig) -> None:
    registered = {line.split(":")[0] for line in pytestconfig.getini("markers")}
    assert set(prerequisites.MARKERS) <= registered
