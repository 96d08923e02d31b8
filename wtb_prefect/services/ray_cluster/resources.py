"""Checking resource requests against the Ray cluster (or the local one it would start) before work starts."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from wtb_prefect.config import NodeResourceConfig, RayConfig
from wtb_prefect.errors import ResourceUnsatisfiableError
from wtb_prefect.services import ray_private
from wtb_prefect.services.ray_cluster.connect import last_ray_start
from wtb_prefect.services.ray_cluster.head import RayHead
from wtb_prefect.settings import WTBSettings

logger = logging.getLogger(__name__)


def cluster_resources() -> dict[str, Any]:
    """The total resources of the connected cluster (CPU, GPU, memory, custom)."""
    import ray

    return dict(ray.cluster_resources())


def _node_totals() -> list[dict[str, float]]:
    import ray

    return [dict(n.get("Resources", {})) for n in ray.nodes() if n.get("Alive")]


def local_cluster_resources(config: RayConfig | None = None, settings: WTBSettings | None = None) -> dict | None:
    """The CPU and GPU totals of the local cluster ``connect_ray(config)`` would start, without starting it.

    None when it would join a running cluster instead (only that cluster can
    tell), or when this process is connected already. Lets a request that
    no local cluster could ever meet (a GPU on a CPU-only machine) be rejected
    in a second instead of after Ray's start-up.
    """
    import ray

    config = config or RayConfig()
    if ray.is_initialized() or config.address not in ("auto", "local"):
        return None
    if config.address == "auto" and (RayHead(settings).status() or os.environ.get("RAY_ADDRESS") or last_ray_start()):
        return None
    try:  # as Ray counts them when it starts a node
        manager = ray_private.accelerator_manager("GPU")
        gpus = manager.get_current_node_num_accelerators()
        visible = manager.get_current_process_visible_accelerator_ids()
        if visible is not None:
            gpus = min(gpus, len(visible)) if gpus else len(visible)
    except Exception:  # another Ray version: leave the check to the started cluster
        logger.debug("cannot count this machine's GPUs the way Ray does", exc_info=True)
        return None
    return {"CPU": float(os.cpu_count() or 1), "GPU": float(gpus)}


def check_resources(requests: Mapping[str, NodeResourceConfig], totals: dict[str, float] | None = None) -> None:
    """Raise if any node's request can never be met by a single node of the cluster.

    Ray would queue such a task forever; this turns it into an error before
    any work starts. ``totals`` (e.g. :func:`local_cluster_resources`) checks
    the resources it names against that one node instead of the connected
    cluster.

    Raises:
        ResourceUnsatisfiableError: names the node, the resource, the request
            and the most any cluster node offers.
    """
    nodes = [totals] if totals is not None else _node_totals()
    where = "this machine's local cluster" if totals is not None else f"cluster: {len(nodes)} node(s)"
    for node, res in requests.items():
        need: dict[str, float] = {"CPU": res.num_cpus, "GPU": res.num_gpus, "memory": float(res.memory_bytes)}
        need.update(res.custom_resources)
        need = {k: v for k, v in need.items() if v > 0 and (totals is None or k in totals)}
        if any(all(t.get(k, 0.0) >= v for k, v in need.items()) for t in nodes):
            continue
        missing = [k for k, v in need.items() if max((t.get(k, 0.0) for t in nodes), default=0.0) < v]
        key = missing[0] if missing else next(iter(need))
        field = {"CPU": "num_cpus", "GPU": "num_gpus", "memory": "memory"}.get(key, f"custom_resources[{key!r}]")
        most = max((t.get(key, 0.0) for t in nodes), default=0.0)
        shown_need = res.memory if key == "memory" else need[key]
        shown_most = f"{most / 1e9:.2f}GB" if key == "memory" else most
        raise ResourceUnsatisfiableError(
            f"node {node!r} requests {field}={shown_need}, but no node of the Ray cluster has more than "
            f"{shown_most} {key} ({where}). Ray would queue this task forever. "
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
