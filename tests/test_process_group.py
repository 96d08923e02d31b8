"""Stopping a service's process group started by this very process (as tests, benchmarks and
``WTBTestBench`` start the embedded server): its exited leader is a zombie until reaped, and
the stop must not wait for its whole timeout because of it."""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import time

import psutil
import pytest

from wtb_prefect.errors import ServiceError
from wtb_prefect.services import prefect_server
from wtb_prefect.services.ports import free_port
from wtb_prefect.services.prefect_server import PrefectServer
from wtb_prefect.services.process_group import stop_process_group
from wtb_prefect.settings import WTBSettings


def _group(script: str) -> subprocess.Popen:
    """A new process group running ``script`` in bash, returned once the script has run (its traps set)."""
    process = subprocess.Popen(
        ["bash", "-c", f"{script}\necho ready\nwait"], start_new_session=True, stdout=subprocess.PIPE, text=True
    )
    readable, _, _ = select.select([process.stdout], [], [], 60)
    assert readable and process.stdout.readline().strip() == "ready", "bash did not set its traps within 60 s"
    return process


def _gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_group_that_ends_on_sigterm_is_stopped_at_once_and_reaped() -> None:
    process = _group("sleep 60 &")
    started = time.monotonic()
    assert stop_process_group(process.pid, timeout=20) is True
    assert time.monotonic() - started < 5  # not the whole timeout
    assert _gone(process.pid)


def test_a_group_that_ignores_sigterm_is_killed_after_the_timeout() -> None:
    process = _group("trap '' TERM; sleep 60 &")
    started = time.monotonic()
    assert stop_process_group(process.pid, timeout=1) is True
    assert 1 <= time.monotonic() - started < 5
    assert _gone(process.pid)


def test_no_such_group_is_not_running() -> None:
    process = subprocess.Popen(["true"], start_new_session=True)
    process.wait()
    assert stop_process_group(process.pid, timeout=1) is False


def test_a_zero_timeout_still_ends_the_group() -> None:
    process = _group("trap '' TERM; sleep 60 &")
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


def test_a_server_that_ignores_sigterm_after_a_failed_start_is_killed(tmp_path, monkeypatch) -> None:
    """A server process stuck past its start timeout (here a stand-in that ignores SIGTERM) is killed, not left running."""
    started: list[subprocess.Popen] = []
    real_popen = subprocess.Popen

    def stuck_server(command, **kwargs):  # noqa: ANN001, ANN202 (Popen's signature)
        started.append(real_popen(["bash", "-c", "trap '' TERM; sleep 60 & wait"], **kwargs))
        return started[-1]

    monkeypatch.setattr(prefect_server.subprocess, "Popen", stuck_server)
    monkeypatch.setattr(prefect_server, "_FAILED_START_STOP_S", 1.0)
    with pytest.raises(ServiceError, match="did not answer"):
        prefect_server.PrefectServer(WTBSettings(home=tmp_path)).start(timeout=1.0)
    assert _gone(started[0].pid)
