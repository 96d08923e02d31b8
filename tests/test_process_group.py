"""Stopping a service's process group started by this very process (as tests, benchmarks and
``WTBTestBench`` start the embedded server): its exited leader is a zombie until reaped, and
the stop must not wait for its whole timeout because of it."""

from __future__ import annotations

import os
import subprocess
import time

from wtb_prefect.services.process_group import stop_process_group


def _group(script: str) -> subprocess.Popen:
    process = subprocess.Popen(["bash", "-c", script], start_new_session=True)
    time.sleep(0.3)  # the shell has set its traps
    return process


def _gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_group_that_ends_on_sigterm_is_stopped_at_once_and_reaped() -> None:
    process = _group("sleep 60 & wait")
    started = time.monotonic()
    assert stop_process_group(process.pid, timeout=20) is True
    assert time.monotonic() - started < 5  # not the 20 s timeout
    assert _gone(process.pid)


def test_a_group_that_ignores_sigterm_is_killed_after_the_timeout() -> None:
    process = _group("trap '' TERM; sleep 60 & wait")
    started = time.monotonic()
    assert stop_process_group(process.pid, timeout=1) is True
    assert 1 <= time.monotonic() - started < 5
    assert _gone(process.pid)


def test_no_such_group_is_not_running() -> None:
    process = subprocess.Popen(["true"], start_new_session=True)
    process.wait()
    assert stop_process_group(process.pid, timeout=1) is False


def test_a_zero_timeout_still_ends_the_group() -> None:
    process = _group("trap '' TERM; sleep 60 & wait")
    assert stop_process_group(process.pid, timeout=0.0) is True
    assert _gone(process.pid)
