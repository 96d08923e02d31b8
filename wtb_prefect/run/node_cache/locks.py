"""Cross-process locks: one process computes a persistent node call while the others wait for its value."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from wtb_prefect.run.context import NodePlan
from wtb_prefect.run.slots import stepping_aside

if TYPE_CHECKING:
    from filelock import BaseFileLock


logger = logging.getLogger(__name__)


def cache_locks_dir(state_dir: Path) -> Path:
    """Where the processes of one state folder lock the persistent node calls they compute."""
    return Path(state_dir) / "node_cache.locks"


def longest_call_s(plan: NodePlan, queue_timeout: float) -> float:
    """The longest a call of ``plan`` can take: its wait to start, then every attempt and retry delay."""
    return (queue_timeout + plan.timeout_s + plan.retry_delay_s) * (plan.retries + 1)


def lock_call_across_processes(locks_dir: Path, key: str, wait_s: float) -> BaseFileLock | None:
    """The lock file of the node call ``key``, held; waited for while another process computes the call.

    None when the other process holds it longer than ``wait_s`` (longer than
    its call can take: it is stuck): the call then runs without it, as a call
    paid twice beats a batch that never ends. A process that dies releases its
    locks (the operating system does).
    """
    from filelock import FileLock, Timeout

    locks_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(locks_dir / f"{hashlib.sha256(key.encode()).hexdigest()[:40]}.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:  # another process computes this call: its value is stored when it ends
        try:
            with stepping_aside():  # the execution's slot serves another execution meanwhile
                lock.acquire(timeout=wait_s)
        except Timeout:
            logger.warning(
                "node call %s: another process has held its lock file %s for %.0fs, longer than the call "
                "can take; computing it here instead",
                key,
                lock.lock_file,
                wait_s,
            )
            return None
    return lock
