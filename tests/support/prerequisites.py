"""What a marked test needs from the machine, checked before it runs; a missing one fails the test.

Markers (registered in pyproject's pytest ``markers``):

- ``postgres``: PostgreSQL answering on 127.0.0.1:5432 with a database ``test``
  the ``postgres`` user reaches without a password;
- ``chromium``: a ``chromium`` binary on ``PATH``;
- ``network``: the package index uv installs from (environments built from
  the index);
- ``no_gpu``: a Ray cluster without GPUs (the test shows what happens to a GPU
  request on a machine that has none).

A missing prerequisite fails the test with what is missing and how to provide
it. It never skips: a skipped test is a green run that checked nothing.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request

import pytest

POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
"""The database the ``postgres`` tests use (trust auth on the local server)."""

MARKERS = ("postgres", "chromium", "network", "no_gpu")

_APT_WAIT_S = 900.0


@functools.cache
def postgres_problem() -> str | None:
    """Why :data:`POSTGRES_URL` cannot be used (None when it can)."""
    import psycopg

    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=10) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as error:
        return (
            f"PostgreSQL is not usable at {POSTGRES_URL} ({str(error).strip().splitlines()[0]}). "
            "Fix: start the installed server (pg_ctlcluster <version> main start) and create the database "
            "(sudo -u postgres createdb test), with trust auth for local TCP connections; .ci/run does both"
        )
    return None


def _apt_running() -> bool:
    return subprocess.run(["pgrep", "-x", "apt-get|dpkg"], capture_output=True).returncode == 0


@functools.cache
def chromium_binary() -> str | None:
    """The ``chromium`` binary, after waiting for an install already under way (``.ci/run`` starts one)."""
    deadline = time.monotonic() + _APT_WAIT_S
    while shutil.which("chromium") is None and _apt_running():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {_APT_WAIT_S:.0f} s for the running apt-get to install chromium; it is still running")
        time.sleep(2)
    return shutil.which("chromium")


def chromium_problem() -> str | None:
    """Why there is no Chromium to drive (None when there is)."""
    if chromium_binary() is None:
        return (
            "no chromium binary on PATH. Fix: apt-get install -y chromium (as root; .ci/run starts this install "
            "before the tests)"
        )
    return None


def package_index() -> str:
    """The index uv resolves from: ``UV_DEFAULT_INDEX`` / ``UV_INDEX_URL`` or PyPI."""
    return os.environ.get("UV_DEFAULT_INDEX") or os.environ.get("UV_INDEX_URL") or "https://pypi.org/simple"


@functools.cache
def network_problem() -> str | None:
    """Why the package index does not answer (None when it does)."""
    url = package_index().rstrip("/") + "/pip/"
    try:
        with urllib.request.urlopen(url, timeout=15) as response:
            response.read(1)
    except (urllib.error.URLError, OSError) as error:
        return (
            f"the package index {package_index()} does not answer ({error}); these tests build environments with "
            "uv from it. Fix: allow HTTPS to the index, or point UV_DEFAULT_INDEX at a mirror that serves it"
        )
    return None


def gpu_problem() -> str | None:
    """Why the cluster of this session is not GPU-free (None when it is)."""
    import ray

    if not ray.is_initialized():
        return (
            "a no_gpu test must stand on the session's Ray cluster (the ray_cluster or bench fixture) "
            "to read its GPU count"
        )
    gpus = ray.cluster_resources().get("GPU", 0)
    if gpus:
        return (
            f"this test shows how a GPU request fails on a cluster without GPUs, but this cluster has {gpus:g}. "
            "Fix: run it where Ray sees no GPU (CUDA_VISIBLE_DEVICES= for the whole session)"
        )
    return None


_BEFORE_FIXTURES = {"postgres": postgres_problem, "chromium": chromium_problem, "network": network_problem}


def check_before_setup(item: pytest.Item) -> None:
    """Fail ``item`` when a prerequisite its markers name (other than ``no_gpu``) is missing."""
    for marker, problem in _BEFORE_FIXTURES.items():
        if item.get_closest_marker(marker) is not None and (reason := problem()) is not None:
            pytest.fail(f"{item.nodeid} needs {marker}: {reason}", pytrace=False)


def check_after_setup(item: pytest.Item) -> None:
    """Fail a ``no_gpu`` test whose cluster (set up by its fixtures) has a GPU."""
    if item.get_closest_marker("no_gpu") is not None and (reason := gpu_problem()) is not None:
        pytest.fail(f"{item.nodeid} needs no_gpu: {reason}", pytrace=False)
