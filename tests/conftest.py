"""One real Prefect server and one real Ray cluster for the whole test session.

``make test`` runs the suite on two pytest-xdist workers (``-n 2 --dist
loadgroup``) that still share one server and one cluster: the server lives in
a state folder the controller names (:data:`SHARED_SERVICES_ENV`), started by
the first worker that needs it and stopped by the controller at the end; and
every test on the session's Ray cluster is in one xdist group, so one worker
runs them all while the other runs the tests that start services of their own
and the unit tests. Each other module is a group of its own, so a module's
fixtures are built once.

Every test that uses them (through ``prefect_api``, ``ray_cluster`` or
``bench``), or the report tests' real browser (``chromium``), is marked
``integration`` here, at collection; tests that start services another way
carry the mark themselves. ``pytest -m "not integration"`` is the fast subset,
and a test not marked integration that starts a service anyway fails: see
:mod:`tests.support.service_guard`.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support import prerequisites, service_guard
from wtb_prefect.services.ports import free_port

if TYPE_CHECKING:
    from wtb_prefect.services.prefect_server import PrefectServer

SHARED_SERVICES_ENV = "WTB_TEST_SHARED_SERVICES"
"""The state folder of the session's Prefect server, named once by the controller for every worker."""

SESSION_RAY_GROUP = "session_ray_cluster"
"""The xdist group of every test on the session's Ray cluster: one worker runs them all."""

ONE_WORK_POOL = ("tests/test_deployments.py", "tests/test_scheduled_runs.py")
"""Modules whose Prefect workers poll one work pool: run by one worker, one after the other."""

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
        item.add_marker(pytest.mark.xdist_group(_xdist_group(item)))


def pytest_xdist_node_collection_finished(node: object, ids: list[str]) -> None:
    """Stop the run when pytest-xdist did not tag the node ids with their groups under ``--dist loadgroup``.

    pytest-xdist 3.8 tags a node id by assigning a field pytest 9.2 no longer
    reads; the groups are then silently ignored and two workers would start
    two Ray clusters (pytest-dev/pytest-xdist#1386).
    """
    config = node.config  # type: ignore[attr-defined]
    if config.getoption("dist") == "loadgroup" and ids and not any("@" in nodeid for nodeid in ids):
        import xdist

        pytest.exit(
            f"pytest-xdist {xdist.__version__} did not tag the xdist groups with pytest {pytest.__version__} "
            "(pytest-dev/pytest-xdist#1386). Fix: install the pytest the lock file names (uv sync), "
            "or run without -n",
            returncode=pytest.ExitCode.USAGE_ERROR,
        )


def _xdist_group(item: pytest.Item) -> str:
    if "ray_cluster" in getattr(item, "fixturenames", ()):
        return SESSION_RAY_GROUP
    module = item.nodeid.split("::", 1)[0]
    return "one_work_pool" if module in ONE_WORK_POOL else module


_TERMINAL_SIZE = ("COLUMNS", "LINES")
_CONTROLLER_TERMINAL_ENV = "WTB_TEST_CONTROLLER_TERMINAL"


def pytest_configure(config: pytest.Config) -> None:
    """The controller (or a run without workers) names the shared services' state folder.

    A worker drops the terminal size an xdist worker starts with (COLUMNS=80,
    LINES=24) when the controller had none: the CLI's rich console, made when
    the CLI is imported, would otherwise wrap every table and message at 80
    columns whatever a test sets later.
    """
    if not hasattr(config, "workerinput"):
        os.environ.setdefault(SHARED_SERVICES_ENV, tempfile.mkdtemp(prefix="wtb-test-services-"))
        os.environ[_CONTROLLER_TERMINAL_ENV] = ",".join(name for name in _TERMINAL_SIZE if name in os.environ)
        return
    kept = os.environ.get(_CONTROLLER_TERMINAL_ENV, "").split(",")
    for name in _TERMINAL_SIZE:
        if name not in kept:
            os.environ.pop(name, None)


def _shared_server(folder: str | None = None) -> PrefectServer:
    """The session's Prefect server, in the state folder the controller named."""
    from wtb_prefect.services.prefect_server import PrefectServer
    from wtb_prefect.settings import WTBSettings

    return PrefectServer(WTBSettings(home=Path(folder or os.environ[SHARED_SERVICES_ENV])))


def pytest_unconfigure(config: pytest.Config) -> None:
    """The controller stops the shared Prefect server once every worker is done."""
    if hasattr(config, "workerinput"):
        return
    folder = os.environ.pop(SHARED_SERVICES_ENV, None)
    if folder is None:
        return
    _shared_server(folder).stop()  # always: a server left running loads the machine (none ran: no-op)
    shutil.rmtree(folder, ignore_errors=True)


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
    """A real Prefect server (SQLite) started by wtb_prefect, shared by the session and its workers.

    The first worker to need it starts it; the others find it running in the
    shared state folder; :func:`pytest_unconfigure` stops it.
    """
    from wtb_prefect.services.prefect_server import use_prefect_api

    os.environ.pop("PREFECT_API_URL", None)
    info = _shared_server().start(port=free_port(), timeout=300)  # a loaded machine needs minutes to start it
    # Prefect reads its settings when it is imported (at collection, before this
    # fixture): without this context, clients made by tests would talk to an
    # ephemeral server of their own instead of the session's.
    with use_prefect_api(info.url):
        yield info.url
        from prefect.logging.handlers import APILogHandler

        APILogHandler().flush()  # ship the last logs before the server goes away


@pytest.fixture(scope="session")
def prefect_server_log(prefect_api: str) -> Path:
    """The log file of the session's Prefect server."""
    info = _shared_server().status()
    assert info is not None, "the session's Prefect server stopped answering"
    return Path(info.log_file)


@pytest.fixture(scope="session")
def ray_cluster(prefect_api: str) -> Iterator[dict]:
    """A real local Ray cluster, started after the server so workers know its URL."""
    import ray

    from wtb_prefect.config import RayConfig
    from wtb_prefect.services.ray_cluster import cluster_resources, connect_ray

    connect_ray(RayConfig(address="local"))
    os.environ["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address
    _session_ray["up"] = True
    yield cluster_resources()
    _session_ray["up"] = False
    ray.shutdown()


_session_ray = {"up": False}


@pytest.fixture(autouse=True)
def _no_second_ray_cluster(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test off the session's cluster that starts Ray in the test process fails: the session keeps one cluster."""
    yield
    ray = sys.modules.get("ray")
    if _session_ray["up"] or ray is None or not ray.is_initialized():
        return
    ray.shutdown()
    pytest.fail(
        f"{request.node.nodeid} started a Ray cluster in the test process. "
        "Fix: take the ray_cluster (or bench) fixture, so it runs on the session's cluster"
    )


@pytest.fixture()
def bench(ray_cluster: dict):
    """A fresh test bench on the session's services."""
    from wtb_prefect import WTBTestBench

    return WTBTestBench()
