"""Connecting this process to Ray: join ``wtb up``'s head, a named cluster, or start a local one; leave it."""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from typing import Any

from wtb_prefect.config import FileTrackingConfig, RayConfig
from wtb_prefect.errors import ConfigError, ServiceError
from wtb_prefect.services import code_shipping, ray_private
from wtb_prefect.services.quiet import quiet_ray_driver
from wtb_prefect.services.ray_cluster.environment import SYSTEM_CONFIG, answers, auth_mode, worker_env_vars
from wtb_prefect.services.ray_cluster.head import RayHead
from wtb_prefect.settings import WTBSettings, get_settings

logger = logging.getLogger(__name__)
_lock = threading.Lock()
_joined_early = False  # joined `wtb up`'s head before the project (and its RayConfig) was known
_job_env_vars: dict[str, str] = {}  # the worker variables of this process's Ray job
_files_shared = True  # whether every node of the joined cluster sees this machine's files


def _use_auth_mode(mode: str) -> None:
    """Set ``RAY_AUTH_MODE`` for this process (and the workers it starts) before it joins or starts Ray.

    Ray reads the variable into its config when first imported; it is read
    again here, as Ray itself does when it turns token mode on.
    """
    if os.environ.get("RAY_AUTH_MODE") == mode:
        return
    os.environ["RAY_AUTH_MODE"] = mode
    try:
        ray_private.refresh_config()
    except Exception:  # another Ray version: it reads the variable when it connects
        logger.debug("could not refresh Ray's config", exc_info=True)


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
            if (
                config.address == "auto"
                and _files_shared
                and not config.runtime_env
                and worker_env_vars() == _job_env_vars
            ):
                return None  # the early join was right: this cluster, these worker variables
            # this project names another cluster, its own runtime env, or its loading added source
            # folders the workers need (and that nodes on other machines must be shipped)
            ray.shutdown()
        _joined_early = False
        _connect(config, settings)


def _connect(config: RayConfig, settings: WTBSettings | None, ship: bool = True) -> None:
    """:func:`connect_ray` without its checks (the caller holds ``_lock``).

    ``ship=False`` (the early join, before the project's modules are loaded)
    only notes whether nodes are on other machines; :func:`connect_ray` then
    joins again, shipping the project's code.
    """
    import ray

    global _job_env_vars, _files_shared
    _skip_uv_run_hook()
    quiet_ray_driver()
    _job_env_vars = worker_env_vars()
    _files_shared = True
    kwargs: dict[str, Any] = {
        "runtime_env": code_shipping.merge_runtime_env(
            {"env_vars": _job_env_vars}, config.runtime_env, job=_submitted_job_runtime_env()
        ),
        "namespace": "wtb_prefect",
        "log_to_driver": True,
        "configure_logging": False,
    }
    local_kwargs: dict[str, Any] = {"include_dashboard": False, "_system_config": dict(SYSTEM_CONFIG)}
    if config.object_store_memory:
        local_kwargs["object_store_memory"] = config.object_store_memory
    if config.address == "local":
        _start_local(kwargs, local_kwargs)
    elif config.address == "auto":
        head = RayHead(settings).status()
        address = head.address if head else os.environ.get("RAY_ADDRESS") or last_ray_start()
        if head is not None:
            _use_auth_mode(head.auth_mode)  # as the head was started
        if address:
            try:
                ray.init(address=address, **kwargs)
                logger.info("joined the running Ray cluster at %s", address)
                _ship_code_if_needed(address, kwargs, config, settings, ship)
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
        _ship_code_if_needed(config.address, kwargs, config, settings, ship)


def files_shared() -> bool:
    """Whether every node of the joined cluster sees this machine's files.

    True on one machine, or when ``WTB_SHIP_CODE=never`` says the nodes share
    the driver's file system (e.g. the checkout and the state folder on a
    network file system). False once the driver ships its code to nodes of
    other machines: node environments are then built on each node, and file
    tracking is refused.
    """
    return _files_shared


def check_files_reachable(project: str, file_tracking: FileTrackingConfig) -> None:
    """Refuse file tracking when the cluster's nodes cannot see the driver's state folder.

    A tracked execution's workspace and snapshots live in the driver's state
    folder; a node on another machine would write its files where the
    driver never sees them, and restore from snapshots it cannot read.

    Raises:
        ConfigError: names the project's ``file_tracking`` and the fix.
    """
    if file_tracking.enabled and not _files_shared:
        raise ConfigError(
            f"project {project!r}: file_tracking.enabled",
            "is true, but the Ray cluster has nodes on other machines, which cannot see the state folder "
            "holding the tracked workspaces and their snapshots",
            "run the batch on one machine (RayConfig.address='local'), or put WTB_HOME and the project on a "
            "file system every node mounts at the same path and set WTB_SHIP_CODE=never, or turn file "
            "tracking off for the batch",
        )


def _submitted_job_runtime_env() -> dict[str, Any]:
    """The runtime env of the Ray job this driver runs in (``ray job submit``), else empty."""
    raw = os.environ.get(ray_private.job_config_env_var())
    if not raw:
        return {}
    try:
        return dict(json.loads(raw).get("runtime_env") or {})
    except (ValueError, AttributeError):
        return {}


def _other_machines() -> bool:
    """Whether an alive node of the joined cluster is on another machine (has another IP) than this driver."""
    import ray

    here = ray.util.get_node_ip_address()
    return any(node.get("Alive") and node.get("NodeManagerAddress") != here for node in ray.nodes())


def _ship_code_if_needed(
    address: str, kwargs: dict[str, Any], config: RayConfig, settings: WTBSettings | None, ship: bool = True
) -> None:
    """Join again with the driver's code as the job's runtime env when nodes are on other machines.

    Ray sets a job's runtime env when the driver joins, and which nodes the
    cluster has is known only once joined: so the driver joins, looks, and
    joins again shipping its code (seconds, once per driver process). Ray
    uploads each folder once per content; each node downloads it once.

    Raises:
        CodePayloadTooLargeError: a shipped folder is over Ray's package limit.
    """
    import ray

    global _files_shared
    mode = code_shipping.ship_mode()
    if mode == "never" or (mode == "auto" and not _other_machines()):
        return
    _files_shared = False
    if not ship:
        return
    state_dir = (settings or get_settings()).state_dir
    payload = code_shipping.code_payload(state_dir=state_dir)
    ray.shutdown()
    payload.check_size()
    ours = {"env_vars": _job_env_vars, **payload.runtime_env()}
    kwargs = {
        **kwargs,
        "runtime_env": code_shipping.merge_runtime_env(ours, config.runtime_env, job=_submitted_job_runtime_env()),
    }
    try:
        ray.init(address=address, **kwargs)
    except ValueError as exc:
        explained = code_shipping.explain_upload_error(exc, payload)
        if explained is exc:
            raise
        raise explained from exc
    logger.info("nodes on other machines: shipping %s to them", ", ".join(payload.folders()))


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
            _connect(RayConfig(), settings, ship=False)
        except Exception:  # reported by the command's own connect_ray
            logger.debug("early join of the running Ray head failed", exc_info=True)
        _joined_early = ray.is_initialized()


def leave_ray(drain_s: float = 0.1) -> None:
    """Disconnect this process from Ray now rather than in Ray's exit hook; the CLI's last step.

    Ray's exit hook sleeps a fixed while first, so that the workers' last
    prints reach this process. Its log monitor forwards them within one of
    its polls, so a ``drain_s`` of one poll keeps them, and a command ends sooner. Does
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
    that imports LangGraph, which is slow to import. Done here, while the driver is
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


def last_ray_start() -> str | None:
    """The address ``ray start`` last wrote on this machine, if its GCS still answers.

    Only that file: Ray's own "auto" would also join any cluster whose process
    it sees, e.g. another user's test session on a shared machine.
    """
    try:
        address = ray_private.ray_address_file().read_text().strip()
    except (OSError, ImportError):
        return None
    host, _, port = address.rpartition(":")
    return address if port.isdigit() and answers(host or "127.0.0.1", int(port)) else None


def _skip_uv_run_hook() -> None:
    """Turn off Ray's ``uv run`` runtime-env hook for this driver.

    Under ``uv run``, Ray would make every worker re-run ``uv run`` in a copy
    of the working directory (a venv build per job, and worker starts that
    take seconds). wtb_prefect already gives workers the driver's interpreter
    and source folders, and builds the per-node uv environments itself.
    """
    ray_private.disable_uv_run_hook()


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
            _use_auth_mode(auth_mode())  # said, not guessed by Ray: no notice
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
