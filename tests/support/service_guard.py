"""Refuse to start a service (Prefect server, Ray cluster, MLflow server) in a test not marked integration.

The fast subset (``pytest -m "not integration"``) must start no service. Rather
than trust every test to be marked by hand, the guard wraps
:class:`subprocess.Popen`, through which every service process starts (the
Prefect server, Prefect's ephemeral server, ``ray start``, the raylet and GCS
server ``ray.init`` spawns, ``mlflow server``), and raises
:class:`ServiceInUnitTest` instead of starting one. Child Python processes get
the same guard through ``unit_guard/sitecustomize.py`` on their ``PYTHONPATH``.

Standard library only: the sitecustomize shim loads this file in every child
process, before any package is importable.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

ENV_VAR = "WTB_UNIT_TEST"
"""Set (to the test's id) while a test not marked integration runs; children inherit it."""

SITE_DIR = Path(__file__).resolve().parent / "unit_guard"
"""The folder whose ``sitecustomize.py`` installs the guard in child Python processes."""

_ORIGINAL_INIT = subprocess.Popen.__init__


class ServiceInUnitTest(RuntimeError):
    """A test not marked integration tried to start a service."""


def service_in(args: str | bytes | os.PathLike | Sequence) -> str | None:
    """The service a command line would start (None for any other command)."""
    if isinstance(args, (str, bytes, os.PathLike)):
        argv = os.fsdecode(args).split()
    else:
        argv = [os.fsdecode(a) if isinstance(a, (bytes, os.PathLike)) else str(a) for a in args]
    if not argv:
        return None
    program = os.path.basename(argv[0])
    words = set(argv)
    text = " ".join(argv)
    if program in {"raylet", "gcs_server"}:
        return "a Ray cluster (ray.init)"
    if "start" in words and "--head" in words:
        return "a Ray head (ray start --head)"
    if "wtb_prefect.services._server_main" in text or "prefect.server.api.server:create_app" in text:
        return "a Prefect server"
    if program == "prefect" and {"server", "start"} <= words:
        return "a Prefect server"
    if (program == "mlflow" or "mlflow" in argv[1:3]) and "server" in words:
        return "an MLflow server"
    return None


def _guarded_init(self: subprocess.Popen, args, *rest, **kwargs) -> None:
    service = service_in(args)
    if service is not None:
        raise ServiceInUnitTest(
            f"unit test {os.environ.get(ENV_VAR, '?')} started {service}: mark it integration "
            "(pytestmark = pytest.mark.integration) or use the session's prefect_api / ray_cluster / bench fixtures"
        )
    _ORIGINAL_INIT(self, args, *rest, **kwargs)


def install() -> None:
    """Guard :class:`subprocess.Popen` in this process (idempotent)."""
    subprocess.Popen.__init__ = _guarded_init  # type: ignore[method-assign]


def uninstall() -> None:
    """Give :class:`subprocess.Popen` back its own ``__init__``."""
    subprocess.Popen.__init__ = _ORIGINAL_INIT  # type: ignore[method-assign]
