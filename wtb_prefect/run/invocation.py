"""The parts of one node call that travel beside its Prefect task run, not as its parameters.

Prefect records every parameter of a task run as one of its "Task inputs"
(shown in its UI) and formats the run's name from them. A node's task run keeps
only what a user reads there (the node's input ``state`` and its ``label``);
the body to call, LangGraph's injected arguments and the node-call cache's key
are handed over in a context variable. Prefect runs a task's engine in the
calling thread, or in a pool thread under a copy of the caller's context, so
the task function, the cache policy and the commit hook of that run all see
the invocation of the call that started it.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

__all__ = ["NodeInvocation", "current_invocation", "invoking"]


@dataclass(frozen=True)
class NodeInvocation:
    """One node call's body, its injected arguments and (when shared) its cache key."""

    fn: Callable[..., Any]
    """The node's body (bound to the execution's workspace when it has one)."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """The LangGraph arguments the body asked for (``config``, ``runtime``, ...)."""
    call_key: str | None = None
    """The node-call key the cache policy returns (None: not shared)."""
    files_before: str | None = None
    """A fingerprint of the workspace before the call (None: no workspace)."""


_current: contextvars.ContextVar[NodeInvocation | None] = contextvars.ContextVar("wtb_node_invocation", default=None)


def current_invocation() -> NodeInvocation | None:
    """The node call whose task run is running in this context, if any."""
    return _current.get()


@contextmanager
def invoking(invocation: NodeInvocation) -> Iterator[NodeInvocation]:
    """Make ``invocation`` the current node call while its task run is created and run."""
    token = _current.set(invocation)
    try:
        yield invocation
    finally:
        _current.reset(token)
