"""Joining or starting the Ray cluster, and checking resource requests against it.

``wtb up`` starts a Ray head for the state folder (:class:`RayHead`) that
outlives the command, so later runs join it instead of starting Ray again;
``connect_ray`` with ``address="auto"`` finds it through ``<WTB_HOME>/ray/head.json``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from wtb_prefect.config import NodeResourceConfig, RayConfig
from wtb_prefect.errors import ResourceUnsatisfiableError, ServiceError
from wtb_prefect.services.ports import free_port
from wtb_prefect.services.process_group import stop_process_group
from wtb_prefect.services.quiet import quiet_ray_driver
from wtb_prefect.services.start_lock import one_starter
from wtb_prefect.settings import WTBSettings, get_settings

__all__ = [
    "RayHead",
    "RayHeadInfo",
    "check_resources",
    "cluster_resources",
    "connect_ray",
    "join_running_head_early",
    "leave_ray",
    "local_cluster_resources",
    "unsatisfiable_reason",
    "worker_env_vars",
]

logger = logging.getLogger(__name__)
_lock = threading.Lock()
_joined_early = False  # joined `wtb up`'s head before the project (and its RayConfig) was known
_job_env_vars: dict[str, str] = {}  # the worker variables of this process's Ray job

# Environment variables every Ray worker needs so its Prefect task runs reach
# the flow's API server instead of starting a temporary server of their own.
_PROPAGATED = (
    "PREFECT_API_URL",
    "PREFECT_API_KEY",
    "PREFECT_SERVER_ANALYTICS_ENABLED",
    "PREFECT_LOGGING_LEVEL",
    "WTB_HOME",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)


# Keep a warm pool of workers: node tasks are many and short, and Ray's
# default (kill idle workers above one per CPU after 1 s) makes every burst of
# concurrent executions pay worker start-up. The soft limit also sets the
# raylet's "N PYTHON worker processes have been started" warning (at 4x it).
_SYSTEM_CONFIG = {
    "num_workers_soft_limit": max(32, 2 * (os.cpu_count() or 1)),
    "idle_worker_killing_time_threshold_ms": 600_000,
}


def _auth_mode() -> str:
    """Ray's token authentication, named explicitly (Ray prints a notice when it chooses itself)."""
    return os.environ.get("RAY_AUTH_MODE") or "token"


def _use_auth_mode(mode: str) -> None:
    """Set ``RAY_AUTH_MODE`` for this process (and the workers it starts) before it joins or starts Ray.

    Ray reads the variable into its config when first imported; it is read
    again here, as Ray itself does when it turns token mode on.
    """
    if os.environ.get("RAY_AUTH_MODE") == mode:
        return
    os.environ["RAY_AUTH_MODE"] = mode
    try:
        from ray._raylet import Config

        Config.initialize("")
    except Exception:  # another Ray version: it reads the variable when it connects
        logger.debug("could not refresh Ray's config", exc_info=True)


def _user_paths() -> list[str]:
    """sys.path entries of the driver that are not part of an installed Python.

    Workers get these on PYTHONPATH so node functions defined in the user's
    modules import there; interpreter and site-packages folders are left out
    so an isolated worker environment stays isolated.
    """
    prefixes = {Path(p).resolve() for p in {sys.prefix, sys.base_prefix, sys.exec_prefix}}
    paths: list[str] = []
    for entry in [os.getcwd(), *sys.path]:
        if not entry or not os.path.isdir(entry):
            continue
        resolved = Path(entry).resolve()
        if any(resolved == p or p in resolved.parents for p in prefixes):
            continue
        if "site-packages" in resolved.parts or "dist-packages" in resolved.parts:
            continue
        if str(resolved) not in paths:
            paths.append(str(resolved))
    return paths


def worker_env_vars(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment variables wtb_prefect gives every Ray worker of its jobs."""
    env = {k: os.environ[k] for k in _PROPAGATED if os.environ.get(k)}
    # An API URL set in a Prefect profile rather than the environment: read only once
    # Prefect is loaded. The early join of `wtb run` must not wait for that import (most
    # of a second) to start this job's first worker; should the profile name a URL,
    # connect_ray sees the variables changed and joins again with it.
    if "prefect.settings" in sys.modules:
        try:
            from prefect.settings import get_current_settings

            api_url = get_current_settings().api.url
            if api_url:
                env["PREFECT_API_URL"] = str(api_url)
        except Exception:  # settings unavailable: fall back to the environment
            pass
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    env["PYTHONPATH"] = os.pathsep.join(_user_paths() + [p for p in [os.environ.get("PYTHONPATH")] if p])
    env.update(extra or {})
    return env


def connect_ray(config: RayConfig | None = None, settings: WTBSettings | None = None) -> None:
    """Connect this process to the Ray cluster ``config`` names; idempotent.

    ``address="auto"`` joins, in this order, the head ``wtb up`` started for
    the state folder, the cluster ``RAY_ADDRESS`` names, the one ``ray start``
    last left on this machine; and starts a local one for this process when
    none runs. ``"local"`` always starts a local cluster for this process;
    anything else is joined as given. Workers get ``PREFECT_API_URL`` and the
    driver's source folders.

    Raises:
        ServiceError: the named cluster cannot be reached.
    """
    import ray

    global _joined_early
    if ray.is_initialized() and not _joined_early:
        return None  # the hot path: every node call passes here
    config = config or RayConfig()
    with _lock:
        if ray.is_initialized():
            if not _joined_early:
                return None
            _joined_early = False
            if config.address == "auto" and worker_env_vars() == _job_env_vars:
                return None  # the early join was right: this cluster, these worker variables
            # this project names another cluster, or its loading added source folders the workers need
            ray.shutdown()
        _joined_early = False
        _connect(config, settings)


def _connect(config: RayConfig, settings: WTBSettings | None) -> None:
    """:func:`connect_ray` without its checks (the caller holds ``_lock``)."""
    import ray

    global _job_env_vars
    _skip_uv_run_hook()
    quiet_ray_driver()
    _job_env_vars = worker_env_vars()
    kwargs: dict[str, Any] = {
        "runtime_env": {"env_vars": _job_env_vars},
        "namespace": "wtb_prefect",
        "log_to_driver": True,
        "configure_logging": False,
    }
    local_kwargs: dict[str, Any] = {"include_dashboard": False, "_system_config": dict(_SYSTEM_CONFIG)}
    if config.object_store_memory:
        local_kwargs["object_store_memory"] = config.object_store_memory
    if config.address == "local":
        _start_local(kwargs, local_kwargs)
    elif config.address == "auto":
        head = RayHead(settings).status()
        address = head.address if head else os.environ.get("RAY_ADDRESS") or _last_ray_start()
        if head is not None:
            _use_auth_mode(head.auth_mode)  # as the head was started
        if address:
            try:
                ray.init(address=address, **kwargs)
                logger.info("joined the running Ray cluster at %s", address)
                _prewarm()
                return None
            except ConnectionError:
                if head is not None or os.environ.get("RAY_ADDRESS"):
                    raise ServiceError(
                        f"cannot join the Ray cluster at {address}. Fix: `wtb down` then `wtb up`, or unset RAY_ADDRESS"
                    ) from None
        logger.info("no Ray cluster is running; starting a local one")
        _start_local(kwargs, local_kwargs)
        _prewarm()
    else:
        try:
            ray.init(address=config.address, **kwargs)
        except Exception as exc:
            raise ServiceError(
                f"RayConfig.address={config.address!r}: cannot join that Ray cluster ({exc}). "
                "Fix: start it with `ray start --head`, correct the address, or use 'auto'"
            ) from exc


def join_running_head_early(settings: WTBSettings | None = None) -> None:
    """Join the Ray head ``wtb up`` left for this state folder now, before the project is loaded.

    A command calls this first: this job's first worker (:func:`_prewarm`)
    then starts while the command imports and loads the project and sets
    up its flow run, instead of after. It does nothing when no such head
    runs or ``RAY_ADDRESS`` names a cluster; a failed join is left for
    :func:`connect_ray` to report. Should the project's ``RayConfig.address``
    turn out not to be ``"auto"``, or loading it add source folders the
    workers need (a YAML project's folder), ``connect_ray`` leaves the head
    and joins again as the project says.

    It joins in the calling thread: a join in a background thread would
    import Prefect and Ray while the command imports them too, and their
    circular imports fail when two threads run them at once.
    """
    global _joined_early
    if os.environ.get("RAY_ADDRESS") or RayHead(settings).status() is None:
        return
    import ray

    with _lock:
        if ray.is_initialized():
            return
        try:
            _connect(RayConfig(), settings)
        except Exception:  # reported by the command's own connect_ray
            logger.debug("early join of the running Ray head failed", exc_info=True)
        _joined_early = ray.is_initialized()


def leave_ray(drain_s: float = 0.1) -> None:
    """Disconnect this process from Ray now rather than in Ray's exit hook; the CLI's last step.

    Ray's exit hook sleeps half a second first, so that the workers' last
    prints reach this process. Its log monitor forwards them within its
    0.1 s poll, so ``drain_s`` keeps them, and a command ends sooner. Does
    nothing when this process never joined Ray.
    """
    if "ray" not in sys.modules:
        return
    import ray

    with _lock:
        if ray.is_initialized():
            time.sleep(drain_s)
            ray.shutdown()


def _ready() -> bool:
    """Run once per job to start a worker early, with the imports every node's module needs done.

    A node's function is unpickled by reference, which imports its module, and
    that imports LangGraph (most of a second). Done here, while the driver is
    still loading the project, the first node does not wait for it.
    """
    import langgraph.graph  # noqa: F401

    return True


def _prewarm() -> None:
    """Start this job's first Ray worker now, while the flow run is being set up.

    Ray binds a worker to the job (driver process) of its first task, so a new
    run cannot reuse the workers of an earlier one; started here, the worker
    is up (and reused) when the first node is dispatched instead of delaying it.
    """
    import ray

    ray.remote(num_cpus=0, max_retries=0)(_ready).remote()


def _last_ray_start() -> str | None:
    """The address ``ray start`` last wrote on this machine, if its GCS still answers.

    Only that file: Ray's own "auto" would also join any cluster whose process
    it sees, e.g. another user's test session on a shared machine.
    """
    try:
        from ray._common.utils import get_ray_address_file

        address = Path(get_ray_address_file(None)).read_text().strip()
    except (OSError, ImportError):
        return None
    host, _, port = address.rpartition(":")
    return address if port.isdigit() and _answers(host or "127.0.0.1", int(port)) else None


def _answers(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((host, port)) == 0


def _skip_uv_run_hook() -> None:
    """Turn off Ray's ``uv run`` runtime-env hook for this driver.

    Under ``uv run``, Ray would make every worker re-run ``uv run`` in a copy
    of the working directory (a venv build per job, and worker starts that
    take seconds). wtb_prefect already gives workers the driver's interpreter
    and source folders, and builds the per-node uv environments itself.
    """
    from ray._private import ray_constants

    ray_constants.RAY_ENABLE_UV_RUN_RUNTIME_ENV = False


def _start_local(kwargs: dict[str, Any], local_kwargs: dict[str, Any], attempts: int = 3) -> None:
    """Start a local cluster for this process, retrying a start-up that timed out.

    On an overloaded machine Ray's raylet gives up when its metrics agent
    takes longer than its fixed wait to start ("The current node timed out
    during startup"); a second attempt usually succeeds.
    """
    import ray

    for attempt in range(1, attempts + 1):
        try:
            # address="local", not None: None joins a cluster left by `ray start` on this machine
            _use_auth_mode(_auth_mode())  # said, not guessed by Ray: no notice
            ray.init(address="local", **kwargs, **local_kwargs)
            return
        except Exception as exc:
            if "timed out during startup" not in str(exc) or attempt == attempts:
                raise ServiceError(
                    f"the local Ray cluster did not start ({exc}). Fix: check the machine's load "
                    "and memory, or start one with `ray start --head` and use RayConfig.address"
                ) from exc
            logger.warning("Ray start-up timed out (attempt %d of %d); retrying", attempt, attempts)
            ray.shutdown()


def cluster_resources() -> dict[str, Any]:
    """The total resources of the connected cluster (CPU, GPU, memory, custom)."""
    import ray

    return dict(ray.cluster_resources())


def _node_totals() -> list[dict[str, float]]:
    import ray

    return [dict(n.get("Resources", {})) for n in ray.nodes() if n.get("Alive")]


def local_cluster_resources(config: RayConfig | None = None, settings: WTBSettings | None = None) -> dict | None:
    """The CPU and GPU totals of the local cluster ``connect_ray(config)`` would start, without starting it.

    None when it would join a running cluster instead (only that cluster can
    tell), or when this process is connected already. Lets a request that
    no local cluster could ever meet (a GPU on a CPU-only machine) be rejected
    in a second instead of after Ray's start-up.
    """
    import ray

    config = config or RayConfig()
    if ray.is_initialized() or config.address not in ("auto", "local"):
        return None
    if config.address == "auto" and (RayHead(settings).status() or os.environ.get("RAY_ADDRESS") or _last_ray_start()):
        return None
    try:  # as Ray counts them when it starts a node
        from ray._private.accelerators import get_accelerator_manager_for_resource

        manager = get_accelerator_manager_for_resource("GPU")
        gpus = manager.get_current_node_num_accelerators()
        visible = manager.get_current_process_visible_accelerator_ids()
        if visible is not None:
            gpus = min(gpus, len(visible)) if gpus else len(visible)
    except Exception:  # another Ray version: leave the check to the started cluster
        logger.debug("cannot count this machine's GPUs the way Ray does", exc_info=True)
        return None
    return {"CPU": float(os.cpu_count() or 1), "GPU": float(gpus)}


def check_resources(requests: Mapping[str, NodeResourceConfig], totals: dict[str, float] | None = None) -> None:
    """Raise if any node's request can never be met by a single node of the cluster.

    Ray would queue such a task forever; this turns it into an error before
    any work starts. ``totals`` (e.g. :func:`local_cluster_resources`) checks
    the resources it names against that one node instead of the connected
    cluster.

    Raises:
        ResourceUnsatisfiableError: names the node, the resource, the request
            and the most any cluster node offers.
    """
    nodes = [totals] if totals is not None else _node_totals()
    where = "this machine's local cluster" if totals is not None else f"cluster: {len(nodes)} node(s)"
    for node, res in requests.items():
        need: dict[str, float] = {"CPU": res.num_cpus, "GPU": res.num_gpus, "memory": float(res.memory_bytes)}
        need.update(res.custom_resources)
        need = {k: v for k, v in need.items() if v > 0 and (totals is None or k in totals)}
        if any(all(t.get(k, 0.0) >= v for k, v in need.items()) for t in nodes):
            continue
        missing = [k for k, v in need.items() if max((t.get(k, 0.0) for t in nodes), default=0.0) < v]
        key = missing[0] if missing else next(iter(need))
        field = {"CPU": "num_cpus", "GPU": "num_gpus", "memory": "memory"}.get(key, f"custom_resources[{key!r}]")
        most = max((t.get(key, 0.0) for t in nodes), default=0.0)
        shown_need = res.memory if key == "memory" else need[key]
        shown_most = f"{most / 1e9:.2f}GB" if key == "memory" else most
        raise ResourceUnsatisfiableError(
            f"node {node!r} requests {field}={shown_need}, but no node of the Ray cluster has more than "
            f"{shown_most} {key} ({where}). Ray would queue this task forever. "
            f"Fix: lower {field} for {node!r} in ExecutionConfig.node_resources (or the variant's "
            "resources), or join a cluster that has it through RayConfig.address"
        )


# ─── The Ray head of a state folder (`wtb up`) ───


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
        if info is None or not _alive(info.pid) or not _answers("127.0.0.1", info.port):
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
        env["RAY_AUTH_MODE"] = mode = _auth_mode()
        # the raylet gives its agents 30 s by default, too short on a loaded 2-core machine
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
                    f"--system-config={json.dumps(_SYSTEM_CONFIG)}",
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
            if _answers("127.0.0.1", port) and "Ray runtime started" in log_file.read_text(errors="replace"):
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


_OPTION_KEYS = {"num_cpus": "CPU", "num_gpus": "GPU", "memory": "memory"}


def unsatisfiable_reason(options: Mapping[str, Any]) -> str | None:
    """Why no alive node of the cluster can run a task with these Ray ``options`` now, or None.

    A task whose node left the cluster is retried by Ray on another node; if
    none offers what it asks for, Ray would queue it forever instead.
    """
    need = {key: float(options[opt]) for opt, key in _OPTION_KEYS.items() if options.get(opt)}
    need.update({k: float(v) for k, v in (options.get("resources") or {}).items() if v})
    if not need:
        return None
    totals = _node_totals()
    if any(all(t.get(k, 0.0) >= v for k, v in need.items()) for t in totals):
        return None
    missing = [k for k, v in need.items() if max((t.get(k, 0.0) for t in totals), default=0.0) < v]
    key = missing[0] if missing else next(iter(need))
    most = max((t.get(key, 0.0) for t in totals), default=0.0)
    return (
        f"it requests {key}={need[key]:g}, but no alive node of the Ray cluster has more than {most:g} "
        f"({len(totals)} node(s) alive; a node that had it left the cluster)"
    )
