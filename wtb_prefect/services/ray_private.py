"""Every use of Ray's private modules, in one place (see :mod:`wtb_prefect.private_api`).

Ray has no public API for these: the size limit and the file walk of the
packages it uploads for a runtime env, the GPU count it would give a node it
starts, refreshing its config from the environment, the file naming the
latest local cluster, its ``uv run`` runtime-env hook, the function that
prints worker logs in the driver, and its worker's entry module. Each accessor
raises :class:`~wtb_prefect.private_api.PrivateAPIChanged` (an ``ImportError``)
when a Ray release moved the name; callers that can do without fall back.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from wtb_prefect.private_api import PrivateAPIChanged, private_name

__all__ = [
    "DEFAULT_WORKER_MODULE",
    "accelerator_manager",
    "disable_uv_run_hook",
    "job_config_env_var",
    "package_size_limit",
    "ray_address_file",
    "refresh_config",
    "walk_package",
    "worker_module",
]

RAY = "ray"

DEFAULT_WORKER_MODULE = "ray._private.workers.default_worker"
"""The module a Ray worker process runs: a node environment must be able to import it."""

_PACKAGING = "ray._private.runtime_env.packaging"


def package_size_limit() -> int:
    """The largest package Ray uploads for a runtime env, in bytes."""
    return int(private_name(RAY, _PACKAGING, "GCS_STORAGE_MAX_SIZE"))


def walk_package(path: Path, excludes: list[str], visit: Callable[[Path], None], include_gitignore: bool) -> None:
    """Call ``visit`` on every path Ray would pack from the folder ``path`` (its excludes and ignore files applied)."""
    dir_travel = private_name(RAY, _PACKAGING, "_dir_travel")
    get_excludes = private_name(RAY, _PACKAGING, "_get_excludes")
    dir_travel(path, [get_excludes(path, excludes)], visit, include_gitignore=include_gitignore)


def accelerator_manager(resource: str) -> Any:
    """Ray's accelerator manager of ``resource`` (e.g. "GPU"), which counts them as Ray does on node start."""
    return private_name(RAY, "ray._private.accelerators", "get_accelerator_manager_for_resource")(resource)


def refresh_config() -> None:
    """Make Ray read its config (``RAY_*`` variables) from the environment again."""
    private_name(RAY, "ray._raylet", "Config").initialize("")


def ray_address_file() -> Path:
    """The file where ``ray start`` writes the address of the latest local cluster."""
    return Path(private_name(RAY, "ray._common.utils", "get_ray_address_file")(None))


def job_config_env_var() -> str:
    """The variable through which a job submitted to a cluster gets its runtime env."""
    return str(private_name(RAY, "ray._private.runtime_env.constants", "RAY_JOB_CONFIG_JSON_ENV_VAR"))


def disable_uv_run_hook() -> None:
    """Turn off Ray's ``uv run`` runtime-env hook for this driver."""
    constants = private_name(RAY, "ray._private.ray_constants")
    if not hasattr(constants, "RAY_ENABLE_UV_RUN_RUNTIME_ENV"):
        raise PrivateAPIChanged(RAY, "ray._private.ray_constants.RAY_ENABLE_UV_RUN_RUNTIME_ENV is gone", "no such flag")
    constants.RAY_ENABLE_UV_RUN_RUNTIME_ENV = False


def worker_module() -> ModuleType:
    """``ray._private.worker``: its ``print_worker_logs`` prints the workers' log lines in the driver."""
    module = private_name(RAY, "ray._private.worker")
    if not callable(getattr(module, "print_worker_logs", None)):
        raise PrivateAPIChanged(RAY, "ray._private.worker.print_worker_logs is gone", "no such function")
    return module
