"""Single flight within a batch: the node calls in flight in this process.

Concurrent identical calls wait for the first one before they start their own
task run, so that theirs is a certain cache hit that names its origin.
Prefect's ``SERIALIZABLE`` isolation with its ``MemoryLockManager`` would do
the same, but that lock manager deletes a released lock other threads are
still waiting on, so identical concurrent calls could wait forever.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass(frozen=True)
class CallOrigin:
    """The task run that computed a node call's value."""

    task_run_id: str
    batch_id: str | None
    duration_s: float
    metrics: dict[str, float] = field(default_factory=dict)
    usage: dict[str, dict[str, int]] | None = None
    """Tokens of the model calls that computed it, per model (what each reuse saves)."""
    label: str | None = None
    """That task run's name (node | variant | case): what the task runs reusing it are named after."""


@dataclass
class Flight:
    """A call in flight in this process: identical calls wait for it."""

    done: threading.Event = field(default_factory=threading.Event)
    origin: CallOrigin | None = None


flights: dict[str, Flight] = {}
flights_lock = threading.Lock()
