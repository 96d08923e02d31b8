"""Joining or starting the Ray cluster, and checking resource requests against it."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from wtb_prefect.config import NodeResourceConfig, RayConfig
from wtb_prefect.errors import ResourceUnsatisfiableError, ServiceError

__all__ = ["check_resources", "cluster_resources", "connect_ray", "unsatisfiable_reason", "worker_env_vars"]

logger = logging.getLogger(__name__)
_lock = threading.Lock()

# Environment variables every Ray worker needs so its Prefect task runs reach
# the flow's API server instead of starting a temporary server of their own.
_PROPAGATED = (
    "PREFECT_API_URL",
    "PREFECT_API_KEY",
    "PREFECT_SERVER_ANALYTICS_ENABLED",
    "PREFECT_LOGGING_LEVEL",
    "WTB_HOME",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)


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
    env = {k: os.environ[k] for k in _PROPAGATED if os.environ.get(k)}
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


def connect_ray(config: RayConfig | None = None) -> None:
    """Connect this process to the Ray cluster ``config`` names; idempotent.

    ``address="auto"`` joins a running cluster (``RAY_ADDRESS`` or the one
    ``ray start`` left on this machine) and starts a local one when none runs;
    ``"local"`` always starts a local cluster for this process; anything else
    is joined as given. Workers get ``PREFECT_API_URL`` and the driver's
    source folders.

    Raises:
        ServiceError: the named cluster cannot be reached.
    """
    import ray

    if ray.is_initialized():  # the hot path: every node call passes here
        return None
    config = config or RayConfig()
    with _lock:
        if ray.is_initialized():
            return None
        _skip_uv_run_hook()
        kwargs: dict[str, Any] = {
            "runtime_env": {"env_vars": worker_env_vars()},
            "namespace": "wtb_prefect",
            "log_to_driver": True,
            "configure_logging": False,
        }
        local_kwargs: dict[str, Any] = {
            "include_dashboard": False,
            # Keep a warm pool of workers: node tasks are many and short, and
            # Ray's default (kill idle workers above one per CPU after 1 s)
            # makes every burst of concurrent executions pay worker start-up.
            "_system_config": {
                "num_workers_soft_limit": max(32, 2 * (os.cpu_count() or 1)),
                "idle_worker_killing_time_threshold_ms": 600_000,
            },
        }
        if config.object_store_memory:
            local_kwargs["object_store_memory"] = config.object_store_memory
        if config.address == "local":
            _start_local(kwargs, local_kwargs)
        elif config.address == "auto":
            try:
                ray.init(address="auto", **kwargs)
                logger.info("joined the running Ray cluster")
            except ConnectionError:
                logger.info("no Ray cluster is running; starting a local one")
                _start_local(kwargs, local_kwargs)
        else:
            try:
                ray.init(address=config.address, **kwargs)
            except Exception as exc:
                raise ServiceError(
                    f"RayConfig.address={config.address!r}: cannot join that Ray cluster ({exc}). "
                    "Fix: start it with `ray start --head`, correct the address, or use 'auto'"
                ) from exc


def _skip_uv_run_hook() -> None:
    """Turn off Ray's ``uv run`` runtime-env hook for this driver.

    Under ``uv run``, Ray would make every worker re-run ``uv run`` in a copy
    of the working directory (a venv build per job, and worker starts that
    take seconds). wtb_prefect already gives workers the driver's interpreter
    and source folders, and builds the per-node uv environments itself.
    """
    from ray._private import ray_constants

    ray_constants.RAY_ENABLE_UV_RUN_RUNTIME_ENV = False


def _start_local(kwargs: dict[str, Any], local_kwargs: dict[str, Any], attempts: int = 3) -> None:
    """Start a local cluster for this process, retrying a start-up that timed out.

    On an overloaded machine Ray's raylet gives up when its metrics agent
    takes longer than its fixed wait to start ("The current node timed out
    during startup"); a second attempt usually succeeds.
    """
    import ray

    for attempt in range(1, attempts + 1):
        try:
            # address="local", not None: None joins a cluster left by `ray start` on this machine
            ray.init(address="local", **kwargs, **local_kwargs)
            return
        except Exception as exc:
            if "timed out during startup" not in str(exc) or attempt == attempts:
                raise ServiceError(
                    f"the local Ray cluster did not start ({exc}). Fix: check the machine's load "
                    "and memory, or start one with `ray start --head` and use RayConfig.address"
                ) from exc
            logger.warning("Ray start-up timed out (attempt %d of %d); retrying", attempt, attempts)
            ray.shutdown()


def cluster_resources() -> dict[str, Any]:
    """The total resources of the connected cluster (CPU, GPU, memory, custom)."""
    import ray

    return dict(ray.cluster_resources())


def _node_totals() -> list[dict[str, float]]:
    import ray

    return [dict(n.get("Resources", {})) for n in ray.nodes() if n.get("Alive")]


def check_resources(requests: Mapping[str, NodeResourceConfig]) -> None:
    """Raise if any node's request can never be met by a single node of the cluster.

    Ray would queue such a task forever; this turns it into an error before
    any work starts.

    Raises:
        ResourceUnsatisfiableError: names the node, the resource, the request
            and the most any cluster node offers.
    """
    totals = _node_totals()
    for node, res in requests.items():
        need: dict[str, float] = {"CPU": res.num_cpus, "GPU": res.num_gpus, "memory": float(res.memory_bytes)}
        need.update(res.custom_resources)
        need = {k: v for k, v in need.items() if v > 0}
        if any(all(t.get(k, 0.0) >= v for k, v in need.items()) for t in totals):
            continue
        missing = [k for k, v in need.items() if max((t.get(k, 0.0) for t in totals), default=0.0) < v]
        key = missing[0] if missing else next(iter(need))
        field = {"CPU": "num_cpus", "GPU": "num_gpus", "memory": "memory"}.get(key, f"custom_resources[{key!r}]")
        most = max((t.get(key, 0.0) for t in totals), default=0.0)
        shown_need = res.memory if key == "memory" else need[key]
        shown_most = f"{most / 1e9:.2f}GB" if key == "memory" else most
        raise ResourceUnsatisfiableError(
            f"node {node!r} requests {field}={shown_need}, but no node of the Ray cluster has more than "
            f"{shown_most} {key} (cluster: {len(totals)} node(s)). Ray would queue this task forever. "
            f"Fix: lower {field} for {node!r} in ExecutionConfig.node_resources (or the variant's "
            "resources), or join a cluster that has it through RayConfig.address"
        )


_OPTION_KEYS = {"num_cpus": "CPU", "num_gpus": "GPU", "memory": "memory"}


def unsatisfiable_reason(options: Mapping[str, Any]) -> str | None:
    """Why no alive node of the cluster can run a task with these Ray ``options`` now, or None.

    A task whose node left the cluster is retried by Ray on another node; if
    none offers what it asks for, Ray would queue it forever instead.
    """
    need = {key: float(options[opt]) for opt, key in _OPTION_KEYS.items() if options.get(opt)}
    need.update({k: float(v) for k, v in (options.get("resources") or {}).items() if v})
    if not need:
        return None
    totals = _node_totals()
    if any(all(t.get(k, 0.0) >= v for k, v in need.items()) for t in totals):
        return None
    missing = [k for k, v in need.items() if max((t.get(k, 0.0) for t in totals), default=0.0) < v]
    key = missing[0] if missing else next(iter(need))
    most = max((t.get(key, 0.0) for t in totals), default=0.0)
    return (
        f"it requests {key}={need[key]:g}, but no alive node of the Ray cluster has more than {most:g} "
        f"({len(totals)} node(s) alive; a node that had it left the cluster)"
    )
