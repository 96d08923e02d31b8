"""Where a running node finds its execution's file workspace.

Kept free of heavy imports on purpose: Ray workers unpickle
:class:`WorkspaceBound` node bodies, and importing DVC or Prefect there would
cost seconds per worker.

A node of an execution that tracks files reads and writes its tracked paths
under :func:`workspace` (same relative layout as under the project root), so
that concurrent executions never see each other's writes::

    from wtb_prefect import workspace

    def writer(state):
        (workspace() / "outputs" / "answer.txt").write_text(state["answer"])
        return {}
"""

from __future__ import annotations

import contextvars
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["ENV_VAR", "WorkspaceBound", "bind_workspace", "current_workspace", "use_workspace", "workspace"]

ENV_VAR = "WTB_WORKSPACE"
"""Environment variable read by :func:`workspace` when no execution is active in this context."""

_workspace: contextvars.ContextVar[str | None] = contextvars.ContextVar("wtb_workspace", default=None)


def current_workspace() -> Path | None:
    """The workspace of the execution running in this context, or None."""
    value = _workspace.get() or os.environ.get(ENV_VAR)
    return Path(value) if value else None


def workspace() -> Path:
    """The folder holding this execution's copy of the tracked paths.

    Works in the flow process and inside Ray workers. Outside an execution
    that tracks files it raises, rather than silently pointing at the
    project root (where concurrent executions would overwrite each other).

    Raises:
        LookupError: no execution with file tracking is running here; enable
            ``FileTrackingConfig(enabled=True, ...)`` or set ``WTB_WORKSPACE``.
    """
    path = current_workspace()
    if path is None:
        raise LookupError(
            "no file-tracking workspace is active here: wtb_prefect.workspace() only works inside a node "
            "of an execution whose project has file_tracking.enabled=True (or with WTB_WORKSPACE set)"
        )
    return path


def use_workspace(path: str | os.PathLike[str] | None) -> contextvars.Token:
    """Make ``path`` the workspace of this context; returns the token to reset it."""
    return _workspace.set(os.fspath(path) if path is not None else None)


class WorkspaceBound:
    """A node body that runs with a given workspace active (picklable for Ray)."""

    __slots__ = ("fn", "path")

    def __init__(self, fn: Callable[..., Any], path: str) -> None:
        self.fn = fn
        self.path = path

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        token = _workspace.set(self.path)
        try:
            return self.fn(*args, **kwargs)
        finally:
            _workspace.reset(token)

    def __repr__(self) -> str:
        return f"WorkspaceBound({getattr(self.fn, '__qualname__', self.fn)!r}, {self.path!r})"


def bind_workspace(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` bound to the current workspace, or ``fn`` itself when there is none."""
    path = _workspace.get()
    return WorkspaceBound(fn, path) if path else fn
