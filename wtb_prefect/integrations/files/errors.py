"""Errors of file tracking; each names the path and the fix."""

from __future__ import annotations

from wtb_prefect.errors import ConfigError, WTBError

__all__ = [
    "FileTrackingError",
    "SnapshotCorruptError",
    "SnapshotError",
    "SnapshotNotFoundError",
    "TrackedPathError",
]


class FileTrackingError(WTBError):
    """Root of the file-tracking errors."""


class TrackedPathError(FileTrackingError, ConfigError):
    """A tracked path does not exist or lies outside the project root."""


class SnapshotError(FileTrackingError, RuntimeError):
    """A snapshot could not be taken; the previous snapshots are intact."""


class SnapshotNotFoundError(FileTrackingError, LookupError):
    """No snapshot matches the requested id or checkpoint (never taken, or pruned)."""


class SnapshotCorruptError(FileTrackingError, RuntimeError):
    """A cache object a snapshot needs is missing or does not match its hash.

    Raised before the workspace is touched: a failed restore changes nothing.
    """

    def __init__(self, snapshot_id: str, problems: list[str], cache_dir: str) -> None:
        self.snapshot_id = snapshot_id
        self.problems = problems
        shown = "; ".join(problems[:5]) + (f"; ... {len(problems) - 5} more" if len(problems) > 5 else "")
        super().__init__(
            f"snapshot {snapshot_id} cannot be restored: {shown}. Fix: restore the missing objects into the "
            f"DVC cache {cache_dir} (e.g. `dvc pull` from a remote that has them) or roll back to another snapshot"
        )
