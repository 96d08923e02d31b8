"""The one use of Ray's private modules inside a worker (see :mod:`wtb_prefect.private_api`).

Workers import no Ray module themselves (Ray has loaded it): the module is
passed in. Ray has no public way to ask whether this process is a worker,
and its runtime context's worker methods log a warning when asked in a driver.
"""

from __future__ import annotations

from types import ModuleType

from wtb_prefect.private_api import PrivateAPIChanged

__all__ = ["in_worker_process"]


def in_worker_process(ray: ModuleType) -> bool:
    """True in a Ray worker process (not in a driver) of the already imported ``ray``.

    Raises:
        PrivateAPIChanged: ``ray._private.worker`` no longer has ``global_worker`` or ``WORKER_MODE``.
    """
    worker = getattr(getattr(ray, "_private", None), "worker", None)
    if worker is None or not hasattr(worker, "global_worker") or not hasattr(worker, "WORKER_MODE"):
        raise PrivateAPIChanged("ray", "ray._private.worker.global_worker / WORKER_MODE are gone", "no such names")
    return worker.global_worker.mode == worker.WORKER_MODE
