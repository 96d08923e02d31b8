"""Helpers of the fault tests: subprocess drivers with their own state folder and services."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]  # on a driver's path, so it imports tests.graphs


def driver_env(home: Path, api_url: str | None = None, **extra: str) -> dict[str, str]:
    """The environment of a driver subprocess: its own WTB_HOME (and Prefect API), the repository on its path."""
    env = dict(os.environ)
    env["WTB_HOME"] = str(home)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    if api_url is not None:
        env["PREFECT_API_URL"] = api_url
        env["WTB_PREFECT_API_URL"] = api_url
    env.update(extra)
    return env


def start_driver(code: str, env: dict[str, str], log: Path) -> subprocess.Popen:
    """Run ``code`` in a new Python process, its output appended to ``log``."""
    with open(log, "a") as fh:
        return subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code)],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def read_outcome(log: Path) -> dict | None:
    """The JSON a driver printed after ``OUTCOME`` (None before it printed it)."""
    if not log.exists():
        return None
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("OUTCOME "):
            return json.loads(line[len("OUTCOME ") :])
    return None


def wait_exit(process: subprocess.Popen, timeout: float) -> float | None:
    """Wait up to ``timeout`` s for ``process`` to end; the time it ended, or None."""
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        return None
    return time.time()


def finished_executions(marker_dir: Path, last_node: str = "d") -> set[str]:
    """Execution ids whose last node ran (from the marked_steps marker files)."""
    return {p.stem for p in marker_dir.glob("*.runs") if last_node in p.read_text().split()}
