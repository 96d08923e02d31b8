"""Stopping a service's process group started by this very process (as tests, benchmarks and
``WTBTestBench`` start the embedded server): its exited leader is a zombie until reaped, and
the stop must not wait for its whole timeout because of it."""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import subprocess
import threading
import time
from collections.abc import Iterator

import psutil
import pytest

from wtb_prefect.errors import ServiceError
from wtb_prefect.services import prefect_server
from wtb_prefect.services.ports import free_port
from wtb_prefect.services.prefect_server import PrefectServer
from wtb_prefect.services.process_group import stop_process_group
from wtb_prefect.settings import WTBSettings

_PR_SET_CHILD_SUBREAPER = 36  # prctl(2)


@pytest.fixture()
def orphans_reaped_at_once() -> Iterator[set[int]]:
    """This process adopts the orphans of the groups a test starts and reaps them at once, as init does.

    Killed together, a group's leader and its child both die: the child, an
    orphan, stays a zombie in the group until init reaps it, and some
    container inits reap only every few seconds, which every stop here would
    wait for. Yields the set of group ids whose orphans to reap; the leaders
    themselves are left to :func:`stop_process_group`.
    """
    groups: set[int] = set()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    done = threading.Event()

    def reap() -> None:
        while not done.wait(0.01):
            for child in psutil.Process().children():
                with contextlib.suppress(psutil.Error, OSError):
                    if child.pid not in groups and child.status() == psutil.STATUS_ZOMBIE:
                        if os.getpgid(child.pid) in groups:
                            os.waitpid(child.pid, os.WNOHANG)

    reaper = threading.Thread(target=reap, daemon=True)
    reaper.start()
    try:
        yield groups
    finally:
        done.set()
        reaper.join()
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def _group(script: str, groups: set[int]) -> subprocess.Popen:
    """A new process group running ``script`` in bash, returned once the script has run (its traps set)."""
    process = subprocess.Popen(
        ["bash", "-c", f"{script}\necho ready\nwait"], start_new_session=True, stdout=subprocess.PIPE, text=True
    )
    groups.add(process.pid)
    readable, _, _ = select.select([process.stdout], [], [], 60)
    assert readable and process.stdout.readline().strip() == "ready", "bash did not set its traps within 60 s"
    return process


def _gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_group_that_ends_on_sigterm_is_stopped_at_once_and_reaped(orphans_reaped_at_once: set[int]) -> None:
    process = _group("sleep 60 &", orphans_reaped_at_once)
    started = time.monotonic()
    assert stop_process_group(process.pid, timeout=20) is True
    assert time.monotonic() - started < 5  # not the whole timeout
    assert _gone(process.pid)


def test_a_group_that_ignores_sigterm_is_killed_after_the_timeout(orphans_reaped_at_once: set[int]) -> None:
    process = _group("trap '' TERM; sleep 60 &", orphans_reaped_at_once)
    started = time.monotonic()
    assert stop_process_group(process.pid, timeout=0.3) is True
    assert 0.3 <= time.monotonic() - started < 5
    assert _gone(process.pid)


def test_no_such_group_is_not_running() -> None:
    process = subprocess.Popen(["true"], start_new_session=True)
    process.wait()
    assert stop_process_group(process.pid, timeout=1) is False


def test_a_zero_timeout_still_ends_the_group(orphans_reaped_at_once: set[int]) -> None:
    process = _group("trap '' TERM; sleep 60 &", orphans_reaped_at_once)
    assert stop_process_group(process.pid, timeout=0.0) is True
    assert _gone(process.pid)


@pytest.mark.integration  # starts a real Prefect server (and ends it on the timeout)
def test_a_server_that_does_not_answer_in_time_is_stopped_not_left_behind(tmp_path) -> None:
    """The start's timeout raises a typed error, and the server process it started is ended and reaped."""

    def servers(port: int) -> list[psutil.Process]:
        """The server this test started (a child of this process, on ``port``), running or a zombie."""
        found = []
        for child in psutil.Process().children():
            with contextlib.suppress(psutil.Error):
                if child.pid in before:
                    continue  # the test session's own services
                if child.status() == psutil.STATUS_ZOMBIE or f"--port {port}" in " ".join(child.cmdline()):
                    found.append(child)
        return found

    before = {child.pid for child in psutil.Process().children()}
    port = free_port()
    server = PrefectServer(WTBSettings(home=tmp_path))
    with pytest.raises(ServiceError, match="did not answer"):
        server.start(port=port, timeout=1.0)  # far too short for Prefect's migrations
    assert servers(port) == []
    assert server.status() is None


def test_a_server_that_ignores_sigterm_after_a_failed_start_is_killed(
    tmp_path, monkeypatch, orphans_reaped_at_once: set[int]
) -> None:
    """A server process stuck past its start timeout (here a stand-in that ignores SIGTERM) is killed, not left running."""
    started: list[subprocess.Popen] = []
    real_popen = subprocess.Popen

    def stuck_server(command, **kwargs):  # noqa: ANN001, ANN202 (Popen's signature)
        started.append(real_popen(["bash", "-c", "trap '' TERM; sleep 60 & wait"], **kwargs))
        orphans_reaped_at_once.add(started[-1].pid)
        return started[-1]

    monkeypatch.setattr(prefect_server.subprocess, "Popen", stuck_server)
    monkeypatch.setattr(prefect_server, "_FAILED_START_STOP_S", 0.3)
    with pytest.raises(ServiceError, match="did not answer"):
        prefect_server.PrefectServer(WTBSettings(home=tmp_path)).start(timeout=0.3)
    assert _gone(started[0].pid)
