"""Start the real services a benchmark needs, in a throw-away state folder."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator


@contextlib.contextmanager
def services() -> Iterator[str]:
    """A Prefect server (SQLite) and a local Ray cluster, stopped afterwards."""
    with tempfile.TemporaryDirectory(prefix="wtb-bench-") as home:
        os.environ["WTB_HOME"] = home
        os.environ.pop("PREFECT_API_URL", None)
        from wtb_prefect.config import RayConfig
        from wtb_prefect.services.ports import free_port
        from wtb_prefect.services.prefect_server import PrefectServer
        from wtb_prefect.services.ray_cluster import connect_ray

        server = PrefectServer()
        info = server.start(port=free_port())
        os.environ["PREFECT_API_URL"] = info.url
        try:
            connect_ray(RayConfig(address="local"))
            yield info.url
        finally:
            import ray

            ray.shutdown()
            server.stop()
