"""One real Prefect server and one real Ray cluster for the whole test session.

Every test that uses them (through ``prefect_api``, ``ray_cluster`` or
``bench``), or the report tests' real browser (``chromium``), is marked
``integration`` here, at collection; tests that start services another way
carry the mark themselves. ``pytest -m "not integration"`` is the fast subset,
and a test not marked integration that starts a service anyway fails: see
:mod:`tests.support.service_guard`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import prerequisites, service_guard
from wtb_prefect.services.ports import free_port

SERVICE_FIXTURES = frozenset({"prefect_api", "ray_cluster", "bench", "chromium"})
"""Fixtures that start (or stand on) the session's Prefect server and Ray cluster, or a real browser (installed when missing)."""


@pytest.hookimpl(tryfirst=True)  # before pytest's own hook deselects by ``-m``
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``integration`` every test whose fixture closure reaches a service fixture."""
    for item in items:
        if SERVICE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)
        if "chromium" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.chromium)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    """A test marked postgres, chromium, network or no_gpu fails (never skips) when the machine lacks it."""
    prerequisites.check_before_setup(item)
    result = yield
    prerequisites.check_after_setup(item)  # no_gpu reads the cluster its fixtures connected to
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    """In a test not marked integration, starting a service raises, from setup to teardown and in its children."""
    if item.get_closest_marker("integration") is not None:
        return (yield)
    saved = {name: os.environ.get(name) for name in (service_guard.ENV_VAR, "PYTHONPATH")}
    os.environ[service_guard.ENV_VAR] = item.nodeid
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(service_guard.SITE_DIR), saved["PYTHONPATH"]]))
    ray = sys.modules.get("ray")  # joining a running cluster spawns no process, so the Popen guard would not see it
    ray_init = getattr(ray, "init", None)
    if ray is not None:
        ray.init = _refuse_ray_init
    service_guard.install()
    try:
        return (yield)
    finally:
        service_guard.uninstall()
        if ray is not None:
            ray.init = ray_init
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _refuse_ray_init(*args: object, **kwargs: object) -> None:
    raise service_guard.ServiceInUnitTest(
        f"unit test {os.environ.get(service_guard.ENV_VAR)} called ray.init: mark it integration"
    )


@pytest.fixture(scope="session", autouse=True)
def wtb_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh state folder for the session (server DB, checkpoints, runs)."""
    home = tmp_path_factory.mktemp("wtb_home")
    previous = os.environ.get("WTB_HOME")
    os.environ["WTB_HOME"] = str(home)
    yield home
    if previous is None:
        os.environ.pop("WTB_HOME", None)
    else:
        os.environ["WTB_HOME"] = previous


@pytest.fixture(scope="session")
def prefect_api(wtb_home: Path) -> Iterator[str]:
    """A real Prefect server (SQLite) started by wtb_prefect, shared by the session."""
    from wtb_prefect.services.prefect_server import PrefectServer, use_prefect_api
    from wtb_prefect.settings import get_settings

    os.environ.pop("PREFECT_API_URL", None)
    server = PrefectServer(get_settings())
    info = server.start(port=free_port(), timeout=300)  # a loaded machine needs minutes to start it
    try:
        # Prefect reads its settings when it is imported (at collection, before this
        # fixture): without this context, clients made by tests would talk to an
        # ephemeral server of their own instead of the session's.
        with use_prefect_api(info.url):
            yield info.url
            from prefect.logging.handlers import APILogHandler

            APILogHandler().flush()  # ship the last logs before the server goes away
    finally:
        server.stop()  # always: a server left running loads the shared machine


@pytest.fixture(scope="session")
def ray_cluster(prefect_api: str) -> Iterator[dict]:
    """A real local Ray cluster, started after the server so workers know its URL."""
    import ray

    from wtb_prefect.config import RayConfig
    from wtb_prefect.services.ray_cluster import cluster_resources, connect_ray

    connect_ray(RayConfig(address="local"))
    os.environ["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address
    yield cluster_resources()
    ray.shutdown()


@pytest.fixture()
def bench(ray_cluster: dict):
    """A fresh test bench on the session's services."""
    from wtb_prefect import WTBTestBench

    return WTBTestBench()
