"""The key of a node call: what identifies it, and the Prefect cache policy that returns it."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from prefect.cache_policies import CachePolicy

from wtb_prefect.define.project import DEFAULT, WorkflowProject
from wtb_prefect.run.invocation import current_invocation

# Per-execution bookkeeping LangGraph puts into the config: never part of a call's identity.
BOOKKEEPING = frozenset(
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


@dataclass
class NodeCallKey(CachePolicy):
    """Prefect cache policy whose key is the node-call key computed by :class:`NodeSharing`.

    The key travels with the current :class:`~wtb_prefect.run.invocation.NodeInvocation`,
    not as a task parameter (which Prefect would show among the task run's inputs).
    """

    def compute_key(
        self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs: Any
    ) -> str | None:
        invocation = current_invocation()
        return invocation.call_key if invocation is not None else None


def canonical(value: Any) -> Any:
    """``value`` with dict keys sorted and sets ordered, so equal inputs serialize equally."""
    if isinstance(value, Mapping):
        return {str(k): canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        items = [canonical(v) for v in value]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, (set, frozenset)):
        return ["__set__", *sorted((canonical(v) for v in value), key=repr)]
    return value


def identifying_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The injected arguments that reach the body, without per-execution bookkeeping."""
    out: dict[str, Any] = {}
    for name, value in kwargs.items():
        if name == "config" and isinstance(value, Mapping):
            out[name] = {
                "configurable": {k: v for k, v in (value.get("configurable") or {}).items() if k not in BOOKKEEPING},
                "metadata": {k: v for k, v in (value.get("metadata") or {}).items() if k not in BOOKKEEPING},
                "tags": sorted(value.get("tags") or []),
                "recursion_limit": value.get("recursion_limit"),
            }
        elif name == "runtime":
            out[name] = {"context": getattr(value, "context", None), "previous": getattr(value, "previous", None)}
        elif value is not None:
            out[name] = value
    return out


def fingerprint(folder: str) -> str:
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


def node_version(project: WorkflowProject, workflow: str, variant: str, node: str) -> str:
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


def options_entry(table: Mapping[str, Any], node: str, variant: str) -> Any:
    return table.get(f"{node}:{variant}", table.get(node))
