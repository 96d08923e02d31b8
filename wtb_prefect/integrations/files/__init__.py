"""File tracking with DVC: snapshots of each execution's files, rollback, isolated workspaces.

With ``FileTrackingConfig(enabled=True, tracked_paths=[...])`` every execution
works in its own workspace (a copy of the tracked paths; nodes find it with
:func:`wtb_prefect.workspace`), snapshotted into a DVC cache as ``commit_on``
says. ``WTBTestBench.get_file_snapshots`` lists the snapshots and
``WTBTestBench.rollback`` restores the files with the checkpoint.

Importing this package (a plugin, see :mod:`wtb_prefect.plugins`) registers its batch observer factory.
"""

from __future__ import annotations

from wtb_prefect.batch.observers import register_observer_factory
from wtb_prefect.integrations.files.api import list_file_snapshots, rollback_files, tracker_for
from wtb_prefect.integrations.files.errors import (
    FileTrackingError,
    SnapshotCorruptError,
    SnapshotError,
    SnapshotNotFoundError,
    TrackedPathError,
)
from wtb_prefect.integrations.files.observer import FileTrackingObserver, file_tracking_factory, provenance
from wtb_prefect.integrations.files.store import FileSnapshot, SnapshotStore
from wtb_prefect.integrations.files.tracker import CheckpointRef, FileTracker, checkpoint_refs
from wtb_prefect.worker.workspace import workspace

__all__ = [
    "CheckpointRef",
    "FileSnapshot",
    "FileTracker",
    "FileTrackingError",
    "FileTrackingObserver",
    "SnapshotCorruptError",
    "SnapshotError",
    "SnapshotNotFoundError",
    "SnapshotStore",
    "TrackedPathError",
    "checkpoint_refs",
    "file_tracking_factory",
    "list_file_snapshots",
    "rollback_files",
    "tracker_for",
    "provenance",
    "workspace",
]

register_observer_factory(file_tracking_factory)
