"""Quiet by default: the services' notices that do not concern a wtb user are dropped.

``wtb -v`` (or ``WTB_VERBOSE=1``) shows them again. What is dropped:

* MLflow's database set-up lines ("Creating initial MLflow database tables...").
* Prefect's "Timeout of N seconds configured for this task, but the task is
  running in a worker thread" warning, which the threadpool executor would
  print for every node. It says that a node timeout cannot interrupt a node
  blocked in a call in threadpool mode, which holds for every node alike and
  is what the threadpool executor means (``batch_executor="ray"`` cancels).

* The raylet's "N PYTHON worker processes have been started" warning, which
  Ray prints to the driver whenever fractional-CPU node tasks or actors make
  it start more workers than it has CPUs: normal for a test bench, and
  nothing the user can act on (:func:`quiet_ray_driver`).

Ray's token-authentication notice is avoided by naming the mode
(:mod:`wtb_prefect.services.ray_cluster`).
"""

from __future__ import annotations

import logging
import os
import threading

__all__ = ["quiet_ray_driver", "quiet_services", "verbose"]

_lock = threading.Lock()
_installed = False


def verbose() -> bool:
    """True when the user asked to see the services' own notices (``wtb -v``, ``WTB_VERBOSE=1``)."""
    return os.environ.get("WTB_VERBOSE", "").lower() in ("1", "true", "yes")


class _DropPrefix(logging.Filter):
    """Drop the records whose message (format string) starts with ``prefix``."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.startswith(self.prefix))


def quiet_services() -> None:
    """Install the filters of this module in this process (once; nothing under ``wtb -v``)."""
    global _installed
    with _lock:
        if _installed or verbose():
            return
        _installed = True
    for name in ("mlflow.store.db.utils", "alembic.runtime.migration"):
        logger = logging.getLogger(name)
        if logger.level < logging.WARNING:
            logger.setLevel(logging.WARNING)
    logging.getLogger("prefect.task_runs").addFilter(
        _DropPrefix("Timeout of %s seconds configured for this task, but the task is running in a worker thread")
    )


_WORKER_COUNT_WARNING = "PYTHON worker processes have been started on node"


def quiet_ray_driver() -> None:
    """Drop the raylet's worker-count warning from the worker logs Ray prints in this driver."""
    if verbose():
        return
    try:
        from wtb_prefect.services import ray_private

        ray_worker = ray_private.worker_module()
        original = ray_worker.print_worker_logs
        if getattr(original, "_wtb_quiet", False):
            return

        def print_worker_logs(data, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202 (Ray's signature)
            lines = [line for line in data.get("lines", []) if _WORKER_COUNT_WARNING not in line]
            if not lines:
                return None
            return original({**data, "lines": lines}, *args, **kwargs)

        print_worker_logs._wtb_quiet = True  # type: ignore[attr-defined]
        ray_worker.print_worker_logs = print_worker_logs
    except Exception:  # another Ray version: its logs are printed as they are
        logging.getLogger(__name__).debug("Ray's worker logs left unfiltered", exc_info=True)
