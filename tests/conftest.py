"""One real Prefect server and one real Ray cluster for the whole test session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from wtb_prefect.services.ports import free_port


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
    info = server.start(port=free_port(), timeout=300)  # a loaded 2-core machine needs minutes
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
