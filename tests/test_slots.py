"""Execution slots (wtb_prefect.run.slots): waiting executions step aside, no services needed."""

from __future__ import annotations

import threading
import time

import pytest

from wtb_prefect.run.slots import ExecutionSlots, SlotLease


def _until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _in_thread(fn) -> threading.Thread:
    thread = threading.Thread(target=fn, daemon=True)
    thread.start()
    return thread


def test_a_waiting_execution_gives_its_slot_and_gets_one_back_before_new_executions():
    slots = ExecutionSlots(1)
    a, b, c = SlotLease(slots, 0), SlotLease(slots, 1), SlotLease(slots, 2)
    a.start()
    a.call_started()
    a.wait_started()  # its only call waits for another execution's
    assert slots.in_use == 0
    b.start()  # so the next execution starts at once
    assert slots.in_use == 1
    resumed = _in_thread(a.wait_ended)
    started = _in_thread(c.start)
    _until(lambda: slots.waiting == 2)
    b.end()
    resumed.join(10)
    assert not resumed.is_alive() and started.is_alive()  # the one going on first
    assert slots.in_use == 1
    a.call_ended()
    a.end()
    started.join(10)
    assert not started.is_alive() and slots.in_use == 1
    c.end()
    assert slots.in_use == 0 and slots.computing_max == 1


def test_an_execution_keeps_its_slot_while_one_of_its_branches_computes():
    slots = ExecutionSlots(1)
    lease = SlotLease(slots, 0)
    lease.start()
    lease.call_started()  # branch 1 computes
    lease.call_started()  # branch 2 ...
    lease.wait_started()  # ... waits for another execution's call
    assert slots.in_use == 1
    lease.call_ended()  # branch 1 done: every call in progress waits
    assert slots.in_use == 0
    lease.wait_ended()
    assert slots.in_use == 1
    lease.call_ended()
    assert slots.in_use == 1  # between nodes it keeps its slot
    lease.end()
    assert slots.in_use == 0
    with pytest.raises(RuntimeError, match="released more"):
        slots.release()


def test_new_executions_take_slots_in_plan_order():
    slots = ExecutionSlots(1)
    first = SlotLease(slots, 0)
    first.start()
    order: list[int] = []
    leases = {p: SlotLease(slots, p) for p in (3, 1, 2)}

    def start(position: int) -> None:
        leases[position].start()
        order.append(position)
        leases[position].end()

    threads = []
    for position in (3, 1, 2):  # asked in another order than the plan's
        threads.append(_in_thread(lambda p=position: start(p)))
        _until(lambda n=len(threads): slots.waiting == n)
    first.end()
    for thread in threads:
        thread.join(10)
    assert order == [1, 2, 3] and slots.in_use == 0
