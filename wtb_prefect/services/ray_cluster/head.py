"""The Ray head of a state folder (``wtb up``): started in its own process group, found, stopped."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from wtb_prefect.errors import ServiceError
from wtb_prefect.services.ports import free_port
from wtb_prefect.services.process_group import stop_process_group
from wtb_prefect.services.ray_cluster.environment import SYSTEM_CONFIG, answers, auth_mode, worker_env_vars
from wtb_prefect.services.start_lock import one_starter
from wtb_prefect.settings import WTBSettings, get_settings


@dataclass
class RayHeadInfo:
    """What ``wtb status`` reports about the Ray head of a state folder."""

    address: str
    pid: int
    port: int
    temp_dir: str
    log_file: str
    auth_mode: str = "token"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RayHead:
    """Start, find and stop the local Ray head of a state folder.

    The head runs ``ray start --head --block`` in its own process group, on a
    free port (6379, Ray's default, is often taken, e.g. by redis) and with a
    temp folder of its own, so ``stop`` ends exactly its processes and no
    other cluster on the machine.

    Example:
        ```python
        head = RayHead()
        info = head.start()        # or head.status() if one runs already
        print(info.address)        # 127.0.0.1:40123
        head.stop()
        ```
    """

    def __init__(self, settings: WTBSettings | None = None) -> None:
        self.settings = settings or get_settings()
        self.folder = self.settings.state_dir / "ray"
        self.state_file = self.folder / "head.json"

    def _read(self) -> RayHeadInfo | None:
        try:
            return RayHeadInfo(**json.loads(self.state_file.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def status(self) -> RayHeadInfo | None:
        """The running head of this state folder, or None."""
        info = self._read()
        if info is None or not _alive(info.pid) or not answers("127.0.0.1", info.port):
            return None
        return info

    def start(self, timeout: float = 300.0) -> RayHeadInfo:
        """Start the head (or return the one already running) and wait until it answers.

        Processes that start it at once take turns: the first starts it, the
        others find it running.

        Raises:
            ServiceError: it did not start within ``timeout`` seconds; the
                message quotes the end of its log.
        """
        with one_starter(self.folder / "start.lock", "the Ray head", timeout):  # creates the folder
            return self._start(timeout)

    def _start(self, timeout: float) -> RayHeadInfo:
        running = self.status()
        if running is not None:
            return running
        port = free_port()
        # Ray's socket paths must stay short: a temp folder under /tmp named after the state folder
        digest = hashlib.sha1(str(self.settings.state_dir).encode()).hexdigest()[:10]
        temp_dir = f"/tmp/wtbray-{digest}"
        ray_cli = Path(sys.executable).with_name("ray")
        command = [str(ray_cli)] if ray_cli.exists() else [sys.executable, "-m", "ray.scripts.scripts"]
        env = {**os.environ, **worker_env_vars(), "WTB_HOME": str(self.settings.state_dir)}
        env.pop("RAY_ADDRESS", None)
        env["RAY_AUTH_MODE"] = mode = auth_mode()
        # the raylet's default wait for its agents is too short on a loaded machine
        env.setdefault("RAY_agent_register_timeout_ms", "300000")
        if mode == "token":
            subprocess.run([*command, "get-auth-token", "--generate"], env=env, capture_output=True, check=False)
        log_file = self.folder / "head.log"
        with open(log_file, "ab") as log:
            process = subprocess.Popen(
                [
                    *command,
                    "start",
                    "--head",
                    "--block",
                    f"--port={port}",
                    "--node-ip-address=127.0.0.1",
                    "--include-dashboard=false",
                    "--disable-usage-stats",
                    f"--temp-dir={temp_dir}",
                    f"--system-config={json.dumps(SYSTEM_CONFIG)}",
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        info = RayHeadInfo(f"127.0.0.1:{port}", process.pid, port, temp_dir, str(log_file), mode)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and process.poll() is None:
            if answers("127.0.0.1", port) and "Ray runtime started" in log_file.read_text(errors="replace"):
                self.state_file.write_text(json.dumps(asdict(info), indent=2))
                return info
            time.sleep(0.3)
        self._kill(info)
        tail = log_file.read_text(errors="replace")[-2000:]
        raise ServiceError(
            f"the Ray head did not start within {timeout:.0f}s. Last lines of {log_file}:\n{tail}\n"
            "Fix: check the machine's load and memory, then `wtb up` again"
        )

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop the head of this state folder and every process it started; True if one was running."""
        info = self._read()
        if info is None:
            return False
        running = _alive(info.pid)
        self._kill(info, timeout)
        shutil.rmtree(info.temp_dir, ignore_errors=True)  # its sessions' logs and sockets
        self.state_file.unlink(missing_ok=True)
        return running

    @staticmethod
    def _kill(info: RayHeadInfo, timeout: float = 10.0) -> None:
        """SIGTERM the head's process group (``ray start --block`` then stops its processes), then
        SIGKILL what is left of it, and any process that still names its temp folder."""
        stop_process_group(info.pid, timeout)
        import psutil

        for proc in psutil.process_iter(["pid", "cmdline"]):
            with contextlib.suppress(psutil.Error):
                if any(info.temp_dir in part for part in proc.info["cmdline"] or []):
                    proc.kill()
