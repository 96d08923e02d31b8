"""File tracking plugged into a batch through the observer interface."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from wtb_prefect.batch.observers import BatchObserver
from wtb_prefect.integrations.files.tracker import FileTracker, checkpoint_refs
from wtb_prefect.worker.workspace import use_workspace

if TYPE_CHECKING:
    from wtb_prefect.batch.plan import BatchPlan
    from wtb_prefect.results import ExecutionResult, NodeRecord
    from wtb_prefect.run.execution import ExecutionItem

__all__ = ["FileTrackingObserver", "file_tracking_factory"]

logger = logging.getLogger(__name__)


def _step_and_parent() -> tuple[int | None, str | None]:
    """The running node's superstep and the checkpoint it started from (LangGraph's config)."""
    try:
        from langgraph.config import get_config

        config = get_config()
    except Exception:  # not inside a LangGraph run
        return None, None
    step = config.get("metadata", {}).get("langgraph_step")
    parent = config.get("configurable", {}).get("checkpoint_map", {}).get("")
    return step, parent


class FileTrackingObserver(BatchObserver):
    """Gives each execution its workspace and snapshots it as ``commit_on`` says.

    * ``on_execution_start``: creates/seeds the workspace, makes it the
      execution's :func:`wtb_prefect.workspace`, takes the seed snapshot.
    * ``on_node_end``: with ``commit_on`` "node_complete" a snapshot after
      every node; with "checkpoint" one per superstep (a later node of the
      same superstep supersedes the earlier one), linked to the checkpoint
      LangGraph writes after it.
    * ``on_execution_end``: links snapshots to checkpoint ids and records the
      snapshots in ``result.provenance["files"]``.
    """

    def __init__(self, tracker: FileTracker) -> None:
        self.tracker = tracker
        cfg = tracker.config
        self.automatic = cfg.auto_commit and cfg.commit_on != "manual"

    def on_execution_start(self, plan: BatchPlan, item: ExecutionItem) -> None:
        eid = item.execution_id
        use_workspace(self.tracker.workspace(eid))  # this execution's context only
        if self.automatic and not self.tracker.snapshots(eid):
            self.tracker.snapshot(eid, kind="seed", step=-1)

    def on_node_end(self, plan: BatchPlan, item: ExecutionItem, record: NodeRecord) -> None:
        if not self.automatic or getattr(record, "status", "completed") != "completed":
            return
        step, parent = _step_and_parent()
        self.tracker.snapshot(
            item.execution_id,
            node=record.node,
            kind="node",
            step=step,
            parent_checkpoint_id=parent,
            supersede=self.tracker.config.commit_on == "checkpoint",
        )

    def on_execution_end(self, plan: BatchPlan, item: ExecutionItem, result: ExecutionResult) -> None:
        eid = item.execution_id
        try:
            history = item.compiled.graph.get_state_history({"configurable": {"thread_id": eid}})
            self.tracker.link_checkpoints(eid, checkpoint_refs(history))
        finally:
            result.provenance["files"] = provenance(self.tracker, eid)
            self.tracker.close(eid)


def provenance(tracker: FileTracker, execution_id: str) -> dict[str, Any]:
    """The file-tracking part of an execution's provenance: workspace, repository, snapshot ids and hashes."""
    snaps = tracker.snapshots(execution_id)
    head = tracker.store.head(execution_id)
    head_snap = next((s for s in snaps if s.snapshot_id == head), snaps[-1] if snaps else None)
    return {
        "workspace": str(tracker.workspace(execution_id, create=False)),
        "dvc_repository": str(tracker.store.repo_dir),
        "snapshot_id": head_snap.snapshot_id if head_snap else None,
        "snapshot_hash": head_snap.tree_hash if head_snap else None,
        "snapshots": [
            {"id": s.snapshot_id, "hash": s.tree_hash, "checkpoint_id": s.checkpoint_id, "node": s.node} for s in snaps
        ],
    }


def file_tracking_factory(plan: BatchPlan) -> FileTrackingObserver | None:
    """Observer factory: a file-tracking observer for projects with ``file_tracking.enabled``.

    Raises:
        TrackedPathError: a bad tracked path (before any execution starts).
    """
    if not plan.project.file_tracking.enabled:
        return None
    return FileTrackingObserver(FileTracker.for_project(plan.project))
