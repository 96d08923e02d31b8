"""Every embedded Prefect server and Ray head this user runs on this machine, whichever state folder.

Found from the process table (no registry to go stale), without importing
Prefect or Ray: ``wtb status`` stays light, and servers left behind by
scripts with temporary state folders show up too.
"""

from __future__ import annotations

import contextlib
import getpass
import re
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["RunningService", "running_services"]


@dataclass
class RunningService:
    """One service process found on this machine."""

    kind: str
    """``prefect-server`` or ``ray-head``."""
    pid: int
    address: str
    state_folder: str | None
    """The WTB_HOME it belongs to (None: not started by wtb_prefect)."""
    cpu_percent: float
    """CPU use over the sampling window, in % of one core (the process and its children)."""
    started_at: float


def _option(cmdline: list[str], name: str) -> str | None:
    for index, part in enumerate(cmdline):
        if part == name and index + 1 < len(cmdline):
            return cmdline[index + 1]
        if part.startswith(name + "="):
            return part.split("=", 1)[1]
    return None


def _classify(proc) -> tuple[str, str, str | None] | None:  # noqa: ANN001 (psutil.Process)
    """(kind, address, state folder) of a service process, or None."""
    cmdline = proc.info["cmdline"] or []
    joined = " ".join(cmdline)
    if "server" in cmdline and "start" in cmdline and ("prefect" in joined):
        # Prefect's CLI, or a wtb_prefect module that runs it (`python -m wtb_prefect.services...`)
        if not any(p.endswith("prefect") or p.startswith("wtb_prefect.services.") for p in cmdline[:3]):
            return None
        env = {}
        with contextlib.suppress(Exception):
            env = proc.environ()
        home = env.get("PREFECT_HOME", "")
        folder = str(Path(home).parent.parent) if home.endswith("prefect/home") else None
        host = _option(cmdline, "--host") or "127.0.0.1"
        return "prefect-server", f"http://{host}:{_option(cmdline, '--port') or 4200}/api", folder
    if cmdline and cmdline[0].endswith("gcs_server"):
        port = _option(cmdline, "--gcs_server_port")
        env = {}
        with contextlib.suppress(Exception):
            env = proc.environ()
        log_dir = _option(cmdline, "--log_dir") or ""
        folder = env.get("WTB_HOME") if "/wtbray-" in log_dir else None
        if not port or port == "0":  # a cluster started by a driver: the port it was given
            with contextlib.suppress(Exception):
                listening = sorted(c.laddr.port for c in proc.net_connections("tcp") if c.status == "LISTEN")
                port = str(listening[0]) if listening else "?"
        return "ray-head", f"127.0.0.1:{port}", folder
    return None


def running_services(sample_s: float = 0.5) -> list[RunningService]:
    """The embedded Prefect servers and Ray heads (GCS processes) of the current user, oldest first."""
    import psutil

    user = getpass.getuser()
    found: list[tuple[object, tuple[str, str, str | None], list]] = []
    for proc in psutil.process_iter(["pid", "cmdline", "username", "create_time"]):
        with contextlib.suppress(psutil.Error):
            if proc.info["username"] != user:
                continue
            what = _classify(proc)
            if what is None:
                continue
            family = [proc]
            if what[0] == "ray-head":  # the head's processes: its `ray start` parent's group
                with contextlib.suppress(psutil.Error):
                    parent = proc.parent()
                    if parent is not None and re.search(r"ray.*start", " ".join(parent.cmdline())):
                        family = [parent, *parent.children(recursive=True)]
            else:
                family += proc.children(recursive=True)
            found.append((proc, what, family))
    for _, _, family in found:
        for member in family:
            with contextlib.suppress(psutil.Error):
                member.cpu_percent(None)
    time.sleep(sample_s)
    services = []
    for proc, (kind, address, folder), family in found:
        cpu = 0.0
        for member in family:
            with contextlib.suppress(psutil.Error):
                cpu += member.cpu_percent(None)
        services.append(RunningService(kind, proc.pid, address, folder, cpu, proc.info["create_time"]))
    return sorted(services, key=lambda s: s.started_at)
