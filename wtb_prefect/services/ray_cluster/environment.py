"""What every Ray process wtb_prefect starts or joins shares: worker environment variables, system config, auth mode."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Mapping
from pathlib import Path

# Environment variables every Ray worker needs so its Prefect task runs reach
# the flow's API server instead of starting a temporary server of their own.
PROPAGATED = (
    "PREFECT_API_URL",
    "PREFECT_API_KEY",
    "PREFECT_SERVER_ANALYTICS_ENABLED",
    "PREFECT_LOGGING_LEVEL",
    "WTB_HOME",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)


# Keep a warm pool of workers: node tasks are many and short, and Ray's
# default (kill idle workers above one per CPU almost at once) makes every burst of
# concurrent executions pay worker start-up. The soft limit also sets the
# raylet's "N PYTHON worker processes have been started" warning (at 4x it).
SYSTEM_CONFIG = {
    "num_workers_soft_limit": max(32, 2 * (os.cpu_count() or 1)),
    "idle_worker_killing_time_threshold_ms": 600_000,
}


def auth_mode() -> str:
    """Ray's token authentication, named explicitly (Ray prints a notice when it chooses itself)."""
    return os.environ.get("RAY_AUTH_MODE") or "token"


def _user_paths() -> list[str]:
    """sys.path entries of the driver that are not part of an installed Python.

    Workers get these on PYTHONPATH so node functions defined in the user's
    modules import there; interpreter and site-packages folders are left out
    so an isolated worker environment stays isolated.
    """
    prefixes = {Path(p).resolve() for p in {sys.prefix, sys.base_prefix, sys.exec_prefix}}
    paths: list[str] = []
    for entry in [os.getcwd(), *sys.path]:
        if not entry or not os.path.isdir(entry):
            continue
        resolved = Path(entry).resolve()
        if any(resolved == p or p in resolved.parents for p in prefixes):
            continue
        if "site-packages" in resolved.parts or "dist-packages" in resolved.parts:
            continue
        if str(resolved) not in paths:
            paths.append(str(resolved))
    return paths


def worker_env_vars(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment variables wtb_prefect gives every Ray worker of its jobs."""
    env = {k: os.environ[k] for k in PROPAGATED if os.environ.get(k)}
    # An API URL set in a Prefect profile rather than the environment: read only once
    # Prefect is loaded. The early join of `wtb run` must not wait for that import (most
    # of a second) to start this job's first worker; should the profile name a URL,
    # connect_ray sees the variables changed and joins again with it.
    if "prefect.settings" in sys.modules:
        try:
            from prefect.settings import get_current_settings

            api_url = get_current_settings().api.url
            if api_url:
                env["PREFECT_API_URL"] = str(api_url)
        except Exception:  # settings unavailable: fall back to the environment
            pass
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    env["PYTHONPATH"] = os.pathsep.join(_user_paths() + [p for p in [os.environ.get("PYTHONPATH")] if p])
    env.update(extra or {})
    return env


def answers(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((host, port)) == 0
