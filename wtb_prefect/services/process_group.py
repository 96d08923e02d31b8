"""Stopping a service's process group (the embedded Prefect server, the local Ray head)."""

from __future__ import annotations

import contextlib
import os
import signal
import time

__all__ = ["stop_process_group"]


def _group_alive(pgid: int) -> bool:
    """True while a process of group ``pgid`` runs.

    A service started by this process stays in its group as a zombie after it
    exits, until this process reaps it, and ``killpg(pgid, 0)`` still finds
    it: it is reaped here first (a group led by another process's child is
    reaped by that process, or by init).
    """
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pgid, os.WNOHANG)
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_process_group(pgid: int, timeout: float) -> bool:
    """SIGTERM the process group ``pgid``, wait up to ``timeout`` s for it to end, then SIGKILL what is left.

    Returns True if the group was running. Returns once the group has ended
    (or, for a process stuck in the kernel, a few seconds after SIGKILL).
    """
    try:
        os.killpg(pgid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return False
    if not _ended(pgid, timeout):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        _ended(pgid, _KILLED_WAIT_S)  # a killed process still takes a moment to go
    return True


_KILLED_WAIT_S = 5.0


def _ended(pgid: int, timeout: float) -> bool:
    """Wait up to ``timeout`` s for group ``pgid`` to end; True if it did."""
    deadline = time.monotonic() + timeout
    while _group_alive(pgid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True
