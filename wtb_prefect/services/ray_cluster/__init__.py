"""Joining or starting the Ray cluster, and checking resource requests against it.

``wtb up`` starts a Ray head for the state folder (:class:`RayHead`, in
:mod:`.head`) that outlives the command, so later runs join it instead of
starting Ray again; :func:`connect_ray` (:mod:`.connect`) with
``address="auto"`` finds it through ``<WTB_HOME>/ray/head.json``.
:mod:`.resources` rejects requests no node can meet before work starts, and
:mod:`.environment` holds what every Ray process of wtb_prefect shares.
"""

from __future__ import annotations

from wtb_prefect.services.ray_cluster.connect import (
    check_files_reachable,
    connect_ray,
    files_shared,
    join_running_head_early,
    leave_ray,
)
from wtb_prefect.services.ray_cluster.environment import worker_env_vars
from wtb_prefect.services.ray_cluster.head import RayHead, RayHeadInfo
from wtb_prefect.services.ray_cluster.resources import (
    check_resources,
    cluster_resources,
    local_cluster_resources,
    unsatisfiable_reason,
)

__all__ = [
    "RayHead",
    "RayHeadInfo",
    "check_files_reachable",
    "check_resources",
    "cluster_resources",
    "connect_ray",
    "files_shared",
    "join_running_head_early",
    "leave_ray",
    "local_cluster_resources",
    "unsatisfiable_reason",
    "worker_env_vars",
]
