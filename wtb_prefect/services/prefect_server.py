"""The embedded Prefect server: started, found, stopped and used by wtb_prefect.

By default the server keeps its database in SQLite under the state folder
(``WTB_HOME``, default ``./.wtb``); give ``WTB_PREFECT_DATABASE_URL`` (or
``--database-url``) a PostgreSQL URL to use PostgreSQL instead. The server runs
in its own process group and outlives the command that started it, so the
Prefect UI stays open after a batch; ``wtb server stop`` ends it.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from wtb_prefect.errors import ServiceError
from wtb_prefect.services.ports import free_port, port_in_use
from wtb_prefect.services.prefect_outage import api_answers
from wtb_prefect.services.process_group import stop_process_group
from wtb_prefect.services.start_lock import one_starter
from wtb_prefect.settings import WTBSettings, get_settings

__all__ = ["PrefectServer", "ServerInfo", "ensure_prefect_api", "use_prefect_api"]


@dataclass
class ServerInfo:
    """What ``wtb server status`` reports about the embedded server."""

    url: str
    pid: int
    port: int
    database: str
    log_file: str
    running: bool = True

    @property
    def ui_url(self) -> str:
        """The address of the Prefect UI."""
        return self.url.removesuffix("/api")


_FAILED_START_STOP_S = 10.0  # a server that never answered gets this long to end on SIGTERM

# A batch produces many short task runs. On a small machine the server's
# event pipeline, record by record, can cost more CPU than the nodes themselves;
# batching the recorders and switching off automations (triggers) cuts its CPU
# per task run several-fold. The event stream-out stays on: Prefect's own CLI
# (`prefect deployment run --watch`) follows a flow run through it.
# While idle, the polling loops cost the CPU: those a local test bench does not
# wait on (late runs, pause expirations, worker/lease reaping, cancellation and
# clean-up reconciling) poll several times less often than Prefect's defaults,
# so an idle server barely uses a core. The scheduler keeps its own interval.
# Set the same variables in the environment to override any of them.
_SERVER_TUNING = {
    "PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "200",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_READ_BATCH_SIZE": "50",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_BATCH_SIZE": "200",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_READ_BATCH_SIZE": "50",
    "PREFECT_SERVER_SERVICES_LATE_RUNS_LOOP_SECONDS": "30",
    "PREFECT_SERVER_SERVICES_PAUSE_EXPIRATIONS_LOOP_SECONDS": "60",
    "PREFECT_SERVER_SERVICES_CLEANUP_RECONCILER_LOOP_SECONDS": "60",
    "PREFECT_SERVER_SERVICES_CANCELLATION_CLEANUP_LOOP_SECONDS": "60",
    "PREFECT_SERVER_SERVICES_FOREMAN_LOOP_SECONDS": "60",
    "PREFECT_SERVER_SERVICES_REPOSSESSOR_LOOP_SECONDS": "60",
    "PREFECT_SERVER_SERVICES_SCHEDULER_RECENT_DEPLOYMENTS_LOOP_SECONDS": "30",
}


_embedded_urls: set[str] = set()
"""API URLs of embedded servers this process started or found."""


def _server_database_url(url: str | None, folder: Path) -> str:
    if not url:
        return f"sqlite+aiosqlite:///{folder / 'prefect.db'}"
    for prefix in ("postgresql://", "postgres://", "postgresql+psycopg://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    return url


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':')[0]}:***@{host}" if ":" in creds else url
    return url


class PrefectServer:
    """Start, find and stop the embedded Prefect server of a state folder.

    Example:
        ```python
        server = PrefectServer()
        info = server.start()          # or server.status() if one runs already
        print(info.ui_url)             # http://127.0.0.1:4200
        server.stop()
        ```
    """

    def __init__(self, settings: WTBSettings | None = None) -> None:
        self.settings = settings or get_settings()
        self.folder = self.settings.state_dir / "prefect"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.state_file = self.folder / "server.json"

    def status(self) -> ServerInfo | None:
        """The running server of this state folder, or None."""
        if not self.state_file.exists():
            return None
        try:
            info = ServerInfo(**json.loads(self.state_file.read_text()))
        except (ValueError, TypeError):
            return None
        if not api_answers(info.url):
            return None
        _embedded_urls.add(info.url)
        return info

    def start(self, port: int | None = None, database_url: str | None = None, timeout: float = 180.0) -> ServerInfo:
        """Start the server (or return the one already running) and wait until it answers.

        Processes that start it at once (two batches in a new state folder)
        take turns: the first starts it, the others find it running.

        Raises:
            ServiceError: it did not answer within ``timeout`` seconds; the
                message quotes the end of its log.
        """
        with one_starter(self.folder / "start.lock", "the Prefect server", timeout):
            return self._start(port, database_url, timeout)

    def _start(self, port: int | None, database_url: str | None, timeout: float) -> ServerInfo:
        running = self.status()
        if running is not None:
            return running
        port = port or self.settings.prefect_port
        if port_in_use(port):
            port = free_port()
        database = _server_database_url(database_url or self.settings.prefect_database_url, self.folder)
        log_file = self.folder / "server.log"
        env = {**_SERVER_TUNING, **{k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_")}}
        env.update(
            PREFECT_HOME=str(self.folder / "home"),
            PREFECT_SERVER_DATABASE_CONNECTION_URL=database,
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_SERVER_API_HOST="127.0.0.1",
            PREFECT_SERVER_API_PORT=str(port),
            PREFECT_UI_API_URL=f"http://127.0.0.1:{port}/api",
        )
        command = [sys.executable, "-m", "wtb_prefect.services._server_main"]  # Prefect's CLI, calmer idle
        with open(log_file, "ab") as log:
            process = subprocess.Popen(
                [*command, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        info = ServerInfo(
            url=f"http://127.0.0.1:{port}/api",
            pid=process.pid,
            port=port,
            database=_redact(database),
            log_file=str(log_file),
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                break
            if api_answers(info.url, timeout=1.0):
                self.state_file.write_text(json.dumps(asdict(info), indent=2))
                _embedded_urls.add(info.url)
                return info
            time.sleep(0.3)
        stop_process_group(process.pid, _FAILED_START_STOP_S)  # ended and reaped: nothing left holding the port
        tail = log_file.read_text(errors="replace")[-2000:]
        raise ServiceError(
            f"the Prefect server did not answer on port {port} within {timeout:.0f}s "
            f"(database {info.database}). Last lines of {log_file}:\n{tail}\n"
            "Fix: check the database URL, or free the port with `wtb server stop`"
        )

    def stop(self, timeout: float = 20.0) -> bool:
        """Stop the server of this state folder; True if one was running."""
        if not self.state_file.exists():
            return False
        try:
            info = ServerInfo(**json.loads(self.state_file.read_text()))
        except (ValueError, TypeError):
            self.state_file.unlink(missing_ok=True)
            return False
        stopped = stop_process_group(info.pid, timeout)
        self.state_file.unlink(missing_ok=True)
        return stopped


def ensure_prefect_api(settings: WTBSettings | None = None) -> str:
    """The Prefect API URL to use, starting the embedded server if nothing answers.

    Order: ``WTB_PREFECT_API_URL``, then ``PREFECT_API_URL``, then the embedded
    server of the state folder (started when ``WTB_AUTO_START_SERVER`` is true).

    Raises:
        ServiceError: a configured API does not answer, or none runs and
            auto-start is off.
    """
    settings = settings or get_settings()
    configured = settings.prefect_api_url or os.environ.get("PREFECT_API_URL")
    if configured:
        if api_answers(configured):
            return configured
        raise ServiceError(
            f"the Prefect API at {configured} does not answer. Fix: start it "
            "(`wtb server start`), or unset PREFECT_API_URL to use the embedded server"
        )
    server = PrefectServer(settings)
    info = server.status()
    if info is None:
        if not settings.auto_start_server:
            raise ServiceError("no Prefect server is running. Fix: `wtb server start`")
        info = server.start()
    return info.url


@contextlib.contextmanager
def use_prefect_api(api_url: str) -> Iterator[str]:
    """Point Prefect (this process, its threads, subprocesses and Ray workers) at ``api_url``."""
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        PREFECT_SERVER_ANALYTICS_ENABLED,
    )

    from wtb_prefect.services.prefect_settings import settings_override
    from wtb_prefect.services.quiet import quiet_services

    quiet_services()
    # The environment variable is left set on purpose: a process talks to one
    # Prefect API, and Ray workers and subprocesses started later inherit it.
    os.environ["PREFECT_API_URL"] = api_url
    updates: dict[Any, Any] = {PREFECT_API_URL: api_url, PREFECT_SERVER_ANALYTICS_ENABLED: False}
    if api_url in _embedded_urls:
        # Flow-run heartbeats only feed automations, which the embedded server
        # runs without; and Prefect's heartbeat thread holds up the end of every
        # flow run (it sleeps in steps before its join).
        updates[PREFECT_FLOWS_HEARTBEAT_FREQUENCY] = None
    with settings_override(updates):
        yield api_url
