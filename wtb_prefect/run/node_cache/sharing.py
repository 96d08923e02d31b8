"""The node cache of one batch: keys per node, the Prefect task that caches a call, provenance of reused calls."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from prefect.filesystems import WritableFileSystem

from wtb_prefect.define.project import WorkflowProject
from wtb_prefect.errors import ConfigError, WTBError
from wtb_prefect.run.context import CompiledVariant, ExecutionContext, NodePlan
from wtb_prefect.run.invocation import current_invocation
from wtb_prefect.run.node_cache.flight import CallOrigin, Flight, flights, flights_lock
from wtb_prefect.run.node_cache.keys import (
    NodeCallKey,
    canonical,
    fingerprint,
    identifying_kwargs,
    node_version,
    options_entry,
)
from wtb_prefect.run.node_cache.locks import cache_locks_dir, lock_call_across_processes, longest_call_s
from wtb_prefect.run.node_cache.store import MemoryStorage, storage_for
from wtb_prefect.run.node_scope import current_node_metrics, current_node_scope, current_node_usage
from wtb_prefect.run.slots import SlotLease, current_lease, stepping_aside
from wtb_prefect.worker.usage import add_usage

if TYPE_CHECKING:
    from filelock import BaseFileLock

logger = logging.getLogger(__name__)


class UncacheableOutputError(WTBError):
    """A node's output could not be serialized for the node-call cache; that node runs uncached."""

    def __init__(self, node: str, detail: str) -> None:
        self.node = node
        super().__init__(
            f"node {node!r}: its output cannot be serialized for the node-call cache ({detail}); "
            f"the batch goes on with node {node!r} uncached. Fix: return picklable values, or list "
            f"{node!r} in ExecutionConfig.node_cache_exclude"
        )


def validate_entries(project: WorkflowProject, field_name: str, entries: Any) -> None:
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


Reuse = Literal["computed", "shared", "cached"]


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
        flight: Flight | None = None,
        process_lock: BaseFileLock | None = None,
    ) -> None:
        self.task = task
        self.label = label
        self.sharing = sharing
        self.key = key
        self.files_before = files_before
        """A fingerprint of the workspace before the call, read by the commit hook (None: no workspace)."""
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
            with flights_lock:
                flights.pop(self.key or "", None)
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
        # READ_COMMITTED, not SERIALIZABLE: single flight is the in-process flight map of
        # begin() (see node_cache.flight for why not Prefect's lock manager).
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
                    node_version(project, variant.choice.workflow, chosen, name),
                    str(options_entry(execution.cache_versions, name, chosen) or ""),
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
            _, state_bytes = self.serde.dumps_typed(canonical(state))
            _, kwargs_bytes = self.serde.dumps_typed(canonical(identifying_kwargs(kwargs)))
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
        with flights_lock:
            flight = flights.get(key)
            leader = flight is None
            if leader:
                flight = flights[key] = Flight()
        if not leader:
            with stepping_aside():  # the execution's slot serves another execution meanwhile
                flight.done.wait()
            flight = None
            if key in self.file_writers or plan.node in self.uncacheable:
                return NodeCall(plan.prefect_task(), label)
        process_lock = None
        try:
            if flight is not None and self.locks_dir is not None:
                process_lock = lock_call_across_processes(self.locks_dir, key, longest_call_s(plan, self.queue_timeout))
            origin = self.origins.get(key) or self._stored_origin(key)
            if origin is not None:  # named after the run it reuses: its node, variant and case
                label = f"{label} | reused from {origin.label or origin.task_run_id}"
            files_before = fingerprint(workspace) if workspace else None
            return NodeCall(self._task(plan), label, self, key, files_before, flight, process_lock)
        except BaseException:
            if process_lock is not None:
                process_lock.release()
            if flight is not None:  # never leave identical calls waiting
                with flights_lock:
                    flights.pop(key, None)
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
            if call.origin.usage:  # the model calls it did not make again: booked as saved, not spent
                add_usage(scope.saved_usage, call.origin.usage)

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
            invocation = current_invocation()
            before = invocation.files_before if invocation is not None else None
            if invocation is not None and before is not None and fingerprint(invocation.fn.path) != before:
                txn.write_on_commit = False  # it wrote tracked files: never reused
                self.file_writers.add(txn.key)
                return
            run = task_ctx.task_run
            started = run.start_time.timestamp() if run.start_time else time.time()
            duration = max(0.0, time.time() - started)
            usage = current_node_usage()[0] or None  # what a reuse of this value saves
            label = str((task_ctx.parameters or {}).get("label") or run.name).split(" | reused from ")[0]
            origin = CallOrigin(str(run.id), self.batch_id, duration, current_node_metrics(), usage, label=label)
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
    validate_entries(project, "node_cache_exclude", execution.node_cache_exclude)
    validate_entries(project, "cache_versions", execution.cache_versions)
    persistent = execution.node_cache == "persistent"
    storage = storage_for(project, state_dir) if persistent else MemoryStorage()
    return NodeSharing(project, batch_id, variants, storage, persistent, cache_locks_dir(state_dir))


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
