"""Execution slots: at most ``parallelism`` executions compute at once; waiting ones step aside.

A batch runs its executions with ``parallelism`` slots (:class:`ExecutionSlots`).
An execution takes a slot before it starts (in plan order) and holds it until
it ends, except while every node call it has in progress waits for another
execution's identical call in flight (node-call sharing's single-flight, see
:mod:`wtb_prefect.run.node_cache`): it then gives its slot back, so that a
waiting execution does not keep another one from starting, and takes one again
(ahead of executions not yet started) before its call goes on.

So at most ``parallelism`` executions are computing (running node bodies,
LangGraph's bookkeeping, checkpoints) at once, which is what the I/O lane pools
and Ray are sized for, while more executions may be alive, waiting for a value
another one is computing. The execution computing a call others wait for always
holds a slot, so waiting never deadlocks.
"""

from __future__ import annotations

import contextlib
import contextvars
import heapq
import itertools
import threading
from collections.abc import Iterator

__all__ = ["ExecutionSlots", "SlotLease", "current_lease", "leased", "stepping_aside"]


class ExecutionSlots:
    """``size`` slots, granted in order: executions going on first (first come), then new ones by position.

    A released slot is handed to the first in line directly (only that thread wakes up: with
    many executions waiting, waking them all on every release costs the driver's CPU).
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"size must be at least 1, not {size}")
        self.size = size
        self._free = size
        self._queue: list[tuple[tuple[int, int], threading.Event]] = []
        self._lock = threading.Lock()
        self._order = itertools.count()
        self.computing_max = 0
        """The most slots ever taken at once (a check that the bound holds)."""

    @property
    def in_use(self) -> int:
        """Slots taken now."""
        with self._lock:
            return self.size - self._free

    @property
    def waiting(self) -> int:
        """Executions waiting for a slot now."""
        with self._lock:
            return len(self._queue)

    def acquire(self, position: int | None = None) -> None:
        """Take a slot: an execution going on (``position=None``) before any new one;
        new executions (``position`` = their place in the plan) in plan order."""
        ticket = (0, next(self._order)) if position is None else (1, position)
        with self._lock:
            if self._free > 0:  # then nobody waits: a release hands its slot to the first in line
                self._take()
                return
            granted = threading.Event()
            entry = (ticket, granted)
            heapq.heappush(self._queue, entry)
        try:
            granted.wait()
        except BaseException:
            with self._lock:
                if entry in self._queue:
                    self._queue.remove(entry)
                    heapq.heapify(self._queue)
                    raise
            self.release()  # it was handed over meanwhile
            raise

    def release(self) -> None:
        """Give a slot back (to the first in line, if any)."""
        with self._lock:
            if self._free >= self.size:
                raise RuntimeError("released more execution slots than were taken")
            if self._queue:
                _, granted = heapq.heappop(self._queue)
                granted.set()  # the slot changes hands: still taken
            else:
                self._free += 1

    def _take(self) -> None:
        # with self._lock held
        self._free -= 1
        self.computing_max = max(self.computing_max, self.size - self._free)


class SlotLease:
    """One execution's claim on a slot: held from its start to its end, except while all the
    node calls it has in progress wait for other executions' identical calls."""

    def __init__(self, slots: ExecutionSlots, position: int) -> None:
        self.slots = slots
        self.position = position
        self._cond = threading.Condition()
        self._held = False
        self._acquiring = False
        self._calls = 0
        self._waiting = 0
        self._ended = False

    def start(self) -> None:
        """Take the execution's first slot, in plan order."""
        self.slots.acquire(self.position)
        with self._cond:
            self._held = True

    def end(self) -> None:
        """The execution ended: its slot goes back."""
        with self._cond:
            self._ended = True
            held, self._held = self._held, False
        if held:
            self.slots.release()

    # ─── Node calls (from any of the execution's threads: LangGraph runs parallel branches) ───

    def call_started(self) -> None:
        """A node call of this execution starts: the execution must hold a slot."""
        with self._cond:
            self._calls += 1
        self._hold()

    def call_ended(self) -> None:
        with self._cond:
            self._calls -= 1
            self._release_if_all_wait()

    def wait_started(self) -> None:
        """A call of this execution waits for another's: when all its calls wait, the slot goes back."""
        with self._cond:
            self._waiting += 1
            self._release_if_all_wait()

    def wait_ended(self) -> None:
        """The awaited call is done: take a slot again (ahead of new executions) before going on."""
        with self._cond:
            self._waiting -= 1
        self._hold()

    def _release_if_all_wait(self) -> None:
        # with self._cond held
        if self._held and not self._acquiring and self._calls > 0 and self._waiting >= self._calls:
            self._held = False
            self.slots.release()

    def _hold(self) -> None:
        with self._cond:
            while self._acquiring:
                self._cond.wait()
            if self._held or self._ended:
                return
            self._acquiring = True
        try:
            self.slots.acquire()
        except BaseException:
            with self._cond:
                self._acquiring = False
                self._cond.notify_all()
            raise
        with self._cond:
            self._acquiring = False
            self._held = True
            self._cond.notify_all()
            self._release_if_all_wait()  # another branch may have started waiting meanwhile


_lease: contextvars.ContextVar[SlotLease | None] = contextvars.ContextVar("wtb_slot_lease", default=None)


def current_lease() -> SlotLease | None:
    """The slot lease of the execution running in this context, if its batch has slots."""
    return _lease.get()


@contextlib.contextmanager
def leased(lease: SlotLease) -> Iterator[SlotLease]:
    """Run an execution under ``lease`` (its first slot already taken with :meth:`SlotLease.start`);
    the slot goes back at the end."""
    token = _lease.set(lease)
    try:
        yield lease
    finally:
        _lease.reset(token)
        lease.end()


@contextlib.contextmanager
def stepping_aside() -> Iterator[None]:
    """Around a wait for another execution's call: the slot may go to another execution meanwhile."""
    lease = _lease.get()
    if lease is None:
        yield
        return
    lease.wait_started()
    try:
        yield
    finally:
        lease.wait_ended()
