"""Each distinct node call runs once: calls shared within a batch, a node-call cache across batches.

A *node call* is identified by (:meth:`NodeSharing.call_key`):

* the implementation: its qualified name, its source hash, and the project
  version in which that node's implementation last changed (``update_node`` of
  one node leaves the other nodes' keys alone);
* the node's input as LangGraph hands it over, serialized canonically (dict
  keys sorted, sets ordered) with the checkpointer's serde;
* the injected config / runtime context that reaches the body, without
  LangGraph's per-execution bookkeeping (``thread_id``, checkpoint ids and
  namespaces): a node whose output depends on those must opt out;
* the lock hash of the node's environment, and whether the execution tracks files;
* the repetition index (repetition r shares only with repetition r);
* a ``cache_version`` string (``ExecutionConfig.cache_versions``, by ``node`` or
  ``node:variant``) that a user changes to force a miss.

Resources and the variant's name are not part of it.

The machinery is Prefect's where it holds. Every node is still a Prefect task
run; a shared call runs with a :class:`~prefect.cache_policies.CachePolicy`
returning the key, Prefect's transaction (commit hooks record the computing
task run) and Prefect result storage (cloudpickle) for the value. A reused call
ends in Prefect's ``Cached`` state and its task run name ends with ``reused
from <task run id>``. Single-flight is a small in-process flight map:
concurrent identical calls wait for the first one before they start their task
run (so the name is known, and the run is a certain hit). While it waits, the
waiting execution gives its execution slot to another execution of the batch
(:mod:`wtb_prefect.run.slots`): waiting is not computing, so sharing saves wall
time, not only node bodies. Prefect's
``SERIALIZABLE`` isolation with its ``MemoryLockManager`` was the first choice,
but that lock manager deletes a released lock other threads are still waiting
on, and 20 identical concurrent calls deadlocked. Across processes (two
batches at once on one persistent cache, on one machine and one ``WTB_HOME``)
the first process to start a call holds a lock file on its key under
``$WTB_HOME/node_cache.locks/`` while it computes; the other waits (its slot
serving other executions meanwhile, at most as long as the call can take) and
then reuses the stored value. The
operating system releases the lock of a process that dies, so a killed batch
never leaves a call locked. Processes on different machines sharing a storage
block may still compute an identical call twice.

``ExecutionConfig.node_cache``: ``"batch"`` (default) shares within a batch,
values in memory for the batch only; ``"persistent"`` also keeps them under
``$WTB_HOME/node_cache/<project>/`` (or in the Prefect storage block
``node_cache_storage``) for later batches; ``"off"`` shares nothing.
``node_cache_exclude`` lists ``node`` or ``node:variant`` entries that are never
shared nor cached.

Nodes of executions that track files: a call that changed its execution's
tracked files (the workspace differs after the body) is never reused, because
a hit would not write those files; a call that changed none is reused like any
other.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from prefect.cache_policies import CachePolicy
from prefect.filesystems import LocalFileSystem, WritableFileSystem
from pydantic import PrivateAttr

from wtb_prefect.define.project import DEFAULT, WorkflowProject
from wtb_prefect.errors import ConfigError, WTBError
from wtb_prefect.run.context import CompiledVariant, ExecutionContext, NodePlan
from wtb_prefect.run.node_scope import current_node_metrics, current_node_scope
from wtb_prefect.run.slots import SlotLease, current_lease, stepping_aside

if TYPE_CHECKING:
    from filelock import BaseFileLock


__all__ = [
    "CallOrigin",
    "NodeCall",
    "NodeCallKey",
    "NodeSharing",
    "UncacheableOutputError",
    "begin_call",
    "build_sharing",
    "cache_dir",
    "cache_info",
    "cache_locks_dir",
    "clear_cache",
    "lock_call_across_processes",
]

logger = logging.getLogger(__name__)

Reuse = Literal["computed", "shared", "cached"]

# Per-execution bookkeeping LangGraph puts into the config: never part of a call's identity.
_BOOKKEEPING = frozenset(
    {
        "thread_id",
        "checkpoint_id",
        "checkpoint_ns",
        "checkpoint_map",
        "run_id",
        "langgraph_checkpoint_ns",
        "checkpoint_ns_path",
        "task_id",
    }
)


class UncacheableOutputError(WTBError):
    """A node's output could not be serialized for the node-call cache; that node runs uncached."""

    def __init__(self, node: str, detail: str) -> None:
        self.node = node
        super().__init__(
            f"node {node!r}: its output cannot be serialized for the node-call cache ({detail}); "
            f"the batch goes on with node {node!r} uncached. Fix: return picklable values, or list "
            f"{node!r} in ExecutionConfig.node_cache_exclude"
        )


@dataclass(frozen=True)
class CallOrigin:
    """The task run that computed a node call's value."""

    task_run_id: str
    batch_id: str | None
    duration_s: float
    metrics: dict[str, float] = field(default_factory=dict)


class NodeCall:
    """One node call being dispatched: the task to submit, its parameters and (after it ran) its provenance.

    Use it as a context manager around the submission: leaving it wakes the
    identical calls that waited for this one.
    """

    def __init__(
        self,
        task: Any,
        label: str,
        sharing: NodeSharing | None = None,
        key: str | None = None,
        files_before: str | None = None,
        flight: _Flight | None = None,
        process_lock: BaseFileLock | None = None,
    ) -> None:
        self.task = task
        self.label = label
        self.sharing = sharing
        self.key = key
        self.params: dict[str, Any] = {"call_key": key, "files_before": files_before} if key else {}
        self.flight = flight
        self.process_lock = process_lock
        """Held while this process computes the call: other processes wait for its value."""
        self.reuse: Reuse = "computed"
        self.origin: CallOrigin | None = None
        self.lease: SlotLease | None = None
        """The execution's slot lease (:mod:`wtb_prefect.run.slots`): this call counts as in progress."""

    def __enter__(self) -> NodeCall:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self.process_lock is not None:
            self.process_lock.release()
            self.process_lock = None
        if self.flight is not None:
            with _flights_lock:
                _flights.pop(self.key or "", None)
            self.flight.done.set()
            self.flight = None
        if self.lease is not None:
            self.lease.call_ended()
            self.lease = None

    def ended(self, state: Any) -> None:
        """The task run's final state: a ``Cached`` one was reused (its origin's metrics count here too)."""
        if self.sharing is not None and self.key is not None and state is not None and state.name == "Cached":
            self.sharing.settle(self)

    def provenance(self) -> dict[str, Any]:
        """The NodeRecord fields saying how this call was resolved."""
        return {
            "reuse": self.reuse,
            "call_key": self.key,
            "reused_from": self.origin.task_run_id if self.origin else None,
            "saved_s": self.origin.duration_s if self.origin else 0.0,
        }


@dataclass
class NodeCallKey(CachePolicy):
    """Prefect cache policy whose key is the node-call key computed by :class:`NodeSharing`."""

    def compute_key(
        self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs: Any
    ) -> str | None:
        return inputs.get("call_key")


class MemoryStorage(WritableFileSystem):
    """Result storage in this process's memory, for the values shared within one batch."""

    _block_type_name = "WTB node-call memory"
    _data: dict[str, bytes] = PrivateAttr(default_factory=dict)

    def _resolve_path(self, path: str) -> None:
        return None  # keys are used as they are (no base folder)

    def read_path(self, path: str, _sync: bool | None = None) -> bytes:  # noqa: D102
        return self._data[path]

    def write_path(self, path: str, content: bytes, _sync: bool | None = None) -> str:  # noqa: D102
        self._data[path] = content
        return path


@dataclass
class _Flight:
    """A call in flight in this process: identical calls wait for it."""

    done: threading.Event = field(default_factory=threading.Event)
    origin: CallOrigin | None = None


_flights: dict[str, _Flight] = {}
_flights_lock = threading.Lock()


def cache_dir(state_dir: Path) -> Path:
    """Where persistent node-call values live by default."""
    return Path(state_dir) / "node_cache"


def cache_locks_dir(state_dir: Path) -> Path:
    """Where the processes of one state folder lock the persistent node calls they compute."""
    return Path(state_dir) / "node_cache.locks"


def _canonical(value: Any) -> Any:
    """``value`` with dict keys sorted and sets ordered, so equal inputs serialize equally."""
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        items = [_canonical(v) for v in value]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, (set, frozenset)):
        return ["__set__", *sorted((_canonical(v) for v in value), key=repr)]
    return value


def _identifying_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The injected arguments that reach the body, without per-execution bookkeeping."""
    out: dict[str, Any] = {}
    for name, value in kwargs.items():
        if name == "config" and isinstance(value, Mapping):
            out[name] = {
                "configurable": {k: v for k, v in (value.get("configurable") or {}).items() if k not in _BOOKKEEPING},
                "metadata": {k: v for k, v in (value.get("metadata") or {}).items() if k not in _BOOKKEEPING},
                "tags": sorted(value.get("tags") or []),
                "recursion_limit": value.get("recursion_limit"),
            }
        elif name == "runtime":
            out[name] = {"context": getattr(value, "context", None), "previous": getattr(value, "previous", None)}
        elif value is not None:
            out[name] = value
    return out


def _fingerprint(folder: str) -> str:
    """A hash of a workspace's files (paths, sizes, modification times)."""
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            try:
                stat = os.stat(path)
            except OSError:
                continue
            digest.update(f"{os.path.relpath(path, folder)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _longest_call_s(plan: NodePlan, queue_timeout: float) -> float:
    """The longest a call of ``plan`` can take: its wait to start, then every attempt and retry delay."""
    return (queue_timeout + plan.timeout_s + plan.retry_delay_s) * (plan.retries + 1)


def lock_call_across_processes(locks_dir: Path, key: str, wait_s: float) -> BaseFileLock | None:
    """The lock file of the node call ``key``, held; waited for while another process computes the call.

    None when the other process holds it longer than ``wait_s`` (longer than
    its call can take: it is stuck): the call then runs without it, as a call
    paid twice beats a batch that never ends. A process that dies releases its
    locks (the operating system does).
    """
    from filelock import FileLock, Timeout

    locks_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(locks_dir / f"{hashlib.sha256(key.encode()).hexdigest()[:40]}.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:  # another process computes this call: its value is stored when it ends
        try:
            with stepping_aside():  # the execution's slot serves another execution meanwhile
                lock.acquire(timeout=wait_s)
        except Timeout:
            logger.warning(
                "node call %s: another process has held its lock file %s for %.0fs, longer than the call "
                "can take; computing it here instead",
                key,
                lock.lock_file,
                wait_s,
            )
            return None
    return lock


def _node_version(project: WorkflowProject, workflow: str, variant: str, node: str) -> str:
    """The project version in which the node's implementation last changed ("base" = never updated)."""
    if variant != DEFAULT or workflow != DEFAULT:
        return "base"
    override = project.current_version.node_overrides.get(node)
    if override is None:
        return "base"
    for entry in project._versions:  # oldest first: the version that introduced this override
        if entry.node_overrides.get(node) is override:
            return entry.version
    return project.version


def _options_entry(table: Mapping[str, Any], node: str, variant: str) -> Any:
    return table.get(f"{node}:{variant}", table.get(node))


def _validate_entries(project: WorkflowProject, field_name: str, entries: Any) -> None:
    nodes = project.all_nodes()
    for entry in entries:
        node, _, variant = str(entry).partition(":")
        if node not in nodes:
            raise ConfigError(
                f"execution.{field_name}",
                f"names node {node!r}, which no graph of project {project.name!r} has",
                f"use one of {sorted(nodes)} (or 'node:variant')",
            )
        if variant and variant != "default":
            project.get_variant(node, variant)  # raises UnknownVariantError


class NodeSharing:
    """The node-call sharing of one batch: keys, Prefect tasks with the cache policy, provenance."""

    def __init__(
        self,
        project: WorkflowProject,
        batch_id: str,
        variants: list[CompiledVariant],
        storage: WritableFileSystem,
        persistent: bool,
        locks_dir: Path | None = None,
    ) -> None:
        from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

        execution = project.execution
        self.project = project.name
        self.batch_id = batch_id
        self.storage = storage
        self.persistent = persistent
        self.locks_dir = locks_dir if persistent else None
        self.queue_timeout = execution.queue_timeout
        checkpointer = variants[0].graph.checkpointer if variants else None
        self.serde = getattr(checkpointer, "serde", None) or JsonPlusSerializer()
        # READ_COMMITTED, not SERIALIZABLE: single-flight is the in-process flight map of
        # begin(). Prefect 3.9's MemoryLockManager loses waiters under contention (release_lock
        # deletes the entry other threads wait on; 20 identical calls deadlocked in tests).
        self.policy = NodeCallKey()
        self.origins: dict[str, CallOrigin] = {}
        self.file_writers: set[str] = set()
        self.uncacheable: dict[str, UncacheableOutputError] = {}
        self._identity: dict[int, str | None] = {}
        self._tasks: dict[int, Any] = {}
        self._lock = threading.Lock()
        for variant in variants:
            for name, plan in variant.nodes.items():
                chosen = variant.choice.variant_of(name)
                if name in execution.node_cache_exclude or f"{name}:{chosen}" in execution.node_cache_exclude:
                    self._identity[id(plan)] = None
                    continue
                env_lock = plan.environment.get("lock_hash") if plan.environment else "driver"
                parts = [
                    project.name,
                    name,
                    plan.implementation,
                    plan.version,
                    _node_version(project, variant.choice.workflow, chosen, name),
                    str(_options_entry(execution.cache_versions, name, chosen) or ""),
                    str(env_lock),
                ]
                self._identity[id(plan)] = "\0".join(parts)

    # ─── Keys ───

    def call_key(
        self, plan: NodePlan, state: Any, kwargs: Mapping[str, Any], repetition: int, files: bool
    ) -> str | None:
        """The node call's key, or None when this call is not shared (opted out, or not serializable)."""
        identity = self._identity.get(id(plan))
        if identity is None or plan.node in self.uncacheable:
            return None
        try:
            _, state_bytes = self.serde.dumps_typed(_canonical(state))
            _, kwargs_bytes = self.serde.dumps_typed(_canonical(_identifying_kwargs(kwargs)))
        except Exception:  # an input the serde cannot encode: this call runs unshared
            return None
        digest = hashlib.sha256(identity.encode())
        for part in (state_bytes, kwargs_bytes, f"rep={repetition};files={files}".encode()):
            digest.update(b"\0")
            digest.update(part)
        key = f"{self.project}/{plan.node}/{digest.hexdigest()[:40]}"
        return None if key in self.file_writers else key

    # ─── Dispatch ───

    def begin(
        self, plan: NodePlan, ctx: ExecutionContext | None, func: Any, state: Any, kwargs: Mapping[str, Any], label: str
    ) -> NodeCall:
        """Prepare one node call: its task is the node's own one when the call is not shared.

        An identical call in flight in this process is waited for first, so
        that this call's task run is a certain hit that names its origin.
        """
        workspace = getattr(func, "path", None)
        key = self.call_key(plan, state, kwargs, ctx.repetition if ctx else 0, workspace is not None)
        if key is None:
            return NodeCall(plan.prefect_task(), label)
        with _flights_lock:
            flight = _flights.get(key)
            leader = flight is None
            if leader:
                flight = _flights[key] = _Flight()
        if not leader:
            with stepping_aside():  # the execution's slot serves another execution meanwhile
                flight.done.wait()
            flight = None
            if key in self.file_writers or plan.node in self.uncacheable:
                return NodeCall(plan.prefect_task(), label)
        process_lock = None
        try:
            if flight is not None and self.locks_dir is not None:
                process_lock = lock_call_across_processes(
                    self.locks_dir, key, _longest_call_s(plan, self.queue_timeout)
                )
            origin = self.origins.get(key) or self._stored_origin(key)
            if origin is not None:
                label = f"{label} | reused from {origin.task_run_id}"
            files_before = _fingerprint(workspace) if workspace else None
            return NodeCall(self._task(plan), label, self, key, files_before, flight, process_lock)
        except BaseException:
            if process_lock is not None:
                process_lock.release()
            if flight is not None:  # never leave identical calls waiting
                with _flights_lock:
                    _flights.pop(key, None)
                flight.done.set()
            raise

    def settle(self, call: NodeCall) -> None:
        """Provenance of a reused call; its origin's metrics join the current node's."""
        assert call.key is not None
        call.origin = self.origins.get(call.key) or self._stored_origin(call.key)
        same_batch = call.origin is not None and call.origin.batch_id == self.batch_id
        call.reuse = "shared" if same_batch else "cached"
        scope = current_node_scope()
        if scope is not None and call.origin is not None:
            for name, value in call.origin.metrics.items():
                scope.metrics[name] = scope.metrics.get(name, 0.0) + value

    def _task(self, plan: NodePlan) -> Any:
        task = self._tasks.get(id(plan))
        if task is None:
            task = plan.prefect_task().with_options(
                cache_policy=self.policy,
                persist_result=True,
                result_serializer="pickle",
            )
            # Set after construction: Task() insists on a storage block saved on the server (so
            # that remote task workers can read results); these values are read in this process.
            task.result_storage = self.storage
            task.on_commit(self._commit_hook())
            task.on_rollback(self._rollback_hook())
            self._tasks[id(plan)] = task
        return task

    # ─── Prefect transaction hooks (flow process, inside the computing task run) ───

    def _commit_hook(self) -> Any:
        def record_origin(txn: Any) -> None:
            from prefect.context import TaskRunContext

            task_ctx = TaskRunContext.get()
            if task_ctx is None or txn.key is None:
                return
            params = task_ctx.parameters or {}
            before = params.get("files_before")
            if before is not None and _fingerprint(params["fn"].path) != before:
                txn.write_on_commit = False  # it wrote tracked files: never reused
                self.file_writers.add(txn.key)
                return
            run = task_ctx.task_run
            started = run.start_time.timestamp() if run.start_time else time.time()
            origin = CallOrigin(str(run.id), self.batch_id, max(0.0, time.time() - started), current_node_metrics())
            self.origins[txn.key] = origin
            if self.persistent:
                self.storage.write_path(f"{txn.key}.origin", json.dumps(origin.__dict__).encode(), _sync=True)

        record_origin.log_on_run = False  # type: ignore[attr-defined]
        return record_origin

    def _rollback_hook(self) -> Any:
        def uncacheable(txn: Any) -> None:
            if txn.key is None:
                return
            node = txn.key.split("/")[1]
            self.origins.pop(txn.key, None)
            if node not in self.uncacheable:
                error = UncacheableOutputError(node, "Prefect could not write it; see the task run's log")
                self.uncacheable[node] = error
                (logger.error if self.persistent else logger.info)("%s", error)

        uncacheable.log_on_run = False  # type: ignore[attr-defined]
        return uncacheable

    def _stored_origin(self, key: str) -> CallOrigin | None:
        if not self.persistent:
            return None
        try:
            data = json.loads(self.storage.read_path(f"{key}.origin", _sync=True))
        except Exception:
            return None
        origin = CallOrigin(**data)
        self.origins[key] = origin
        return origin

    def errors(self) -> list[UncacheableOutputError]:
        """Nodes whose outputs could not be cached in this batch."""
        return list(self.uncacheable.values())


def _storage_for(project: WorkflowProject, state_dir: Path) -> WritableFileSystem:
    """The persistent storage: the configured Prefect storage block, or the state folder.

    Raises:
        ConfigError: the block does not exist or cannot store files.
    """
    slug = project.execution.node_cache_storage
    if not slug:
        return LocalFileSystem(basepath=str(cache_dir(state_dir)))
    return load_storage_block(slug)


def load_storage_block(slug: str, field: str = "execution.node_cache_storage") -> WritableFileSystem:
    """The Prefect file-system block ``slug`` ('<block-type>/<name>') that holds a node-call cache.

    Raises:
        ConfigError: the block does not exist or cannot store files (named as ``field``).
    """
    from prefect.blocks.core import Block

    try:
        block = Block.load(slug, _sync=True)
    except Exception as exc:
        raise ConfigError(
            field,
            f"names Prefect block {slug!r}, which cannot be loaded ({exc})",
            "create it first (e.g. LocalFileSystem(basepath=...).save('my-cache')) and give "
            "'<block-type>/<name>', e.g. 'local-file-system/my-cache'",
        ) from exc
    if not isinstance(block, WritableFileSystem):
        raise ConfigError(
            field,
            f"names {type(block).__name__}, which cannot store files",
            "give a file-system block such as local-file-system/<name>",
        )
    return block


def build_sharing(
    project: WorkflowProject, batch_id: str, variants: list[CompiledVariant], state_dir: Path
) -> NodeSharing | None:
    """The sharing of a batch as its project's ``ExecutionConfig`` asks (None when off).

    Raises:
        ConfigError: a bad ``node_cache_exclude`` / ``cache_versions`` entry or storage block.
    """
    execution = project.execution
    if execution.node_cache == "off":
        return None
    _validate_entries(project, "node_cache_exclude", execution.node_cache_exclude)
    _validate_entries(project, "cache_versions", execution.cache_versions)
    persistent = execution.node_cache == "persistent"
    storage = _storage_for(project, state_dir) if persistent else MemoryStorage()
    return NodeSharing(project, batch_id, variants, storage, persistent, cache_locks_dir(state_dir))


# ─── wtb cache info | clear ───


def _cache_location(state_dir: Path, storage: str | None) -> tuple[Any, str]:
    """The fsspec file system and root folder of a persistent node-call cache.

    Raises:
        ConfigError: ``storage`` names no file-system block, or one whose files cannot be listed.
    """
    from fsspec.implementations.local import LocalFileSystem as LocalFiles

    if storage is None:
        return LocalFiles(), str(cache_dir(state_dir))
    block = load_storage_block(storage, field="--storage")
    if isinstance(block, LocalFileSystem):
        return LocalFiles(), str(Path(block.basepath or ".").expanduser().resolve())
    files = getattr(block, "filesystem", None)  # RemoteFileSystem: fsspec over its basepath
    if files is None:
        raise ConfigError(
            "--storage",
            f"names a {type(block).__name__}, whose files wtb cannot list",
            "list or delete them with the block's own tools (one folder per project), "
            "or use a local-file-system or remote-file-system block",
        )
    return files, str(block.basepath).rstrip("/")


def cache_info(state_dir: Path, project: str | None = None, storage: str | None = None) -> list[dict[str, Any]]:
    """Entries and bytes of a persistent node-call cache, per project.

    The cache under the state folder, or in the Prefect storage block ``storage``
    (``ExecutionConfig.node_cache_storage``).
    """
    return _cache_rows(*_cache_location(state_dir, storage), project)


def _cache_rows(files: Any, root: str, project: str | None) -> list[dict[str, Any]]:
    """:func:`cache_info` of the cache at ``root`` on the fsspec file system ``files``."""
    if not files.isdir(root):
        return []
    from fsspec.core import strip_protocol

    found = files.find(root, detail=True)  # paths without the protocol, as strip_protocol gives
    root_path = strip_protocol(root).rstrip("/")
    by_project: dict[str, list[tuple[list[str], int]]] = {}
    for path, info in found.items():
        parts = path[len(root_path) :].strip("/").split("/")
        if len(parts) < 2 or (project is not None and parts[0] != project):
            continue
        by_project.setdefault(parts[0], []).append((parts, int(info.get("size") or 0)))
    rows = []
    for name, entries in sorted(by_project.items()):
        values = [parts for parts, _ in entries if not parts[-1].endswith(".origin")]
        rows.append(
            {
                "project": name,
                "entries": len(values),
                "nodes": len({parts[-2] for parts in values}),
                "bytes": sum(size for _, size in entries),
                "path": f"{root}/{name}",
            }
        )
    return rows


def clear_cache(state_dir: Path, project: str | None = None, storage: str | None = None) -> int:
    """Delete a persistent node-call cache (of one project); returns the entries removed."""
    files, root = _cache_location(state_dir, storage)  # loads the block once
    removed = sum(row["entries"] for row in _cache_rows(files, root, project))
    target = f"{root}/{project}" if project is not None else root
    if files.exists(target):
        files.rm(target, recursive=True)
    return removed


def begin_call(
    plan: NodePlan, ctx: ExecutionContext | None, func: Any, state: Any, kwargs: Mapping[str, Any], label: str
) -> NodeCall:
    """The dispatcher's one hook: how to submit this node call (shared, or the node's own task)."""
    sharing = ctx.sharing if ctx is not None else None
    if sharing is None:
        return NodeCall(plan.prefect_task(), label)
    lease = current_lease()
    if lease is None:
        return sharing.begin(plan, ctx, func, state, kwargs, label)
    lease.call_started()  # the execution computes: it holds its slot until every call of it waits
    try:
        call = sharing.begin(plan, ctx, func, state, kwargs, label)
    except BaseException:
        lease.call_ended()
        raise
    call.lease = lease
    return call
