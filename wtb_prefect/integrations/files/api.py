"""What WTBTestBench calls: list an execution's snapshots, roll its files back with its checkpoint."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from wtb_prefect.integrations.files.store import FileSnapshot
from wtb_prefect.integrations.files.tracker import FileTracker, checkpoint_refs

__all__ = ["list_file_snapshots", "rollback_files", "tracker_for"]


def tracker_for(project: Any, settings: Any = None) -> FileTracker | None:
    """The project's file tracker, or None when ``file_tracking.enabled`` is off."""
    if not project.file_tracking.enabled:
        return None
    return FileTracker.for_project(project, settings)


def _refs(graph: Any, execution_id: str) -> list[Any]:
    return checkpoint_refs(graph.get_state_history({"configurable": {"thread_id": execution_id}}))


def list_file_snapshots(project: Any, graph: Any, execution_id: str, settings: Any = None) -> list[FileSnapshot]:
    """The execution's snapshots, oldest first, each linked to its checkpoint (empty without file tracking)."""
    tracker = tracker_for(project, settings)
    if tracker is None:
        return []
    tracker.link_checkpoints(execution_id, _refs(graph, execution_id))
    return tracker.snapshots(execution_id)


def rollback_files(
    project: Any,
    graph: Any,
    execution_id: str,
    checkpoint_id: str,
    rewind: Callable[[], str],
    settings: Any = None,
) -> str:
    """Restore the execution's files to ``checkpoint_id``, then call ``rewind`` (the checkpoint fork).

    The files are checked and restored first (a missing or corrupt object
    raises before anything changes), then ``rewind()`` forks the checkpoint
    and the fork is linked to the restored files. Returns ``rewind()``'s new
    checkpoint id. Without file tracking, or for a checkpoint id the graph
    does not know (``rewind`` raises the checkpoint error), it only rewinds.

    Raises:
        SnapshotNotFoundError: no snapshot covers the checkpoint (pruned or never taken).
        SnapshotCorruptError: a cache object of the snapshot is missing or corrupt.
    """
    tracker = tracker_for(project, settings)
    if tracker is None:
        return rewind()
    refs = _refs(graph, execution_id)
    if checkpoint_id not in {r.checkpoint_id for r in refs}:
        return rewind()
    snap = tracker.snapshot_for_checkpoint(execution_id, checkpoint_id, refs)
    tracker.restore(execution_id, snap.snapshot_id)
    new_id = rewind()
    tracker.snapshot(execution_id, kind="rollback", checkpoint_id=new_id)
    tracker.close(execution_id)
    return new_id
