"""FileTracker: per-execution workspaces, their DVC snapshots, rollback of files."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from wtb_prefect.config import FileTrackingConfig
from wtb_prefect.integrations.files.errors import SnapshotError, SnapshotNotFoundError
from wtb_prefect.integrations.files.selection import Selection
from wtb_prefect.integrations.files.store import FileSnapshot, SnapshotStore

__all__ = ["CheckpointRef", "FileTracker", "checkpoint_refs"]

_stores: dict[Path, SnapshotStore] = {}
_stores_lock = threading.Lock()


def _store(repo_dir: Path) -> SnapshotStore:
    repo_dir = repo_dir.resolve()
    with _stores_lock:
        if repo_dir not in _stores:
            _stores[repo_dir] = SnapshotStore(repo_dir)
        return _stores[repo_dir]


@dataclass(frozen=True)
class CheckpointRef:
    """What file tracking needs to know of one LangGraph checkpoint."""

    checkpoint_id: str
    parent_checkpoint_id: str | None
    step: int
    created_at: float


def checkpoint_refs(history: Iterable[Any]) -> list[CheckpointRef]:
    """CheckpointRefs of LangGraph ``StateSnapshot`` objects (``graph.get_state_history``)."""
    refs = []
    for snap in history:
        parent = (snap.parent_config or {}).get("configurable", {}).get("checkpoint_id")
        created = datetime.fromisoformat(snap.created_at).timestamp() if snap.created_at else 0.0
        refs.append(
            CheckpointRef(
                snap.config["configurable"]["checkpoint_id"], parent, int((snap.metadata or {}).get("step", 0)), created
            )
        )
    return refs


class FileTracker:
    """Snapshots of the tracked paths of one project, one isolated workspace per execution.

    Each execution works in ``<state>/workspaces/<execution_id>/``, seeded from
    the project root's tracked paths (same relative layout). Its snapshots
    cover only that workspace and live in a DVC repository (``repository_path``,
    or ``<state>/dvc`` created with ``dvc init --no-scm`` on first use).

    Raises (from the constructor, before any work):
        TrackedPathError: a tracked path that is missing or outside the project root.
    """

    def __init__(self, project_name: str, root: Path, config: FileTrackingConfig, state_dir: Path) -> None:
        self.project_name = project_name
        self.config = config
        self.state_dir = Path(state_dir).resolve()
        repo = Path(config.repository_path) if config.repository_path else self.state_dir / "dvc"
        if not repo.is_absolute():
            repo = Path(root).resolve() / repo
        # WTB's state (workspaces, DVC repository) may live inside the project root: never track it.
        self.selection = Selection(
            Path(root), config.tracked_paths, config.ignore_patterns, exclude=[self.state_dir, repo]
        )
        self.store = _store(repo)
        self.workspaces_dir = self.state_dir / "workspaces"
        self._odbs: dict[str, Any] = {}
        self._last: dict[str, tuple[str, dict[str, str]]] = {}
        self._index: dict[str, dict[str, tuple[Any, ...]]] = {}
        self._odb_lock = threading.Lock()

    @classmethod
    def for_project(cls, project: Any, settings: Any = None) -> FileTracker:
        """The tracker of a :class:`~wtb_prefect.define.project.WorkflowProject` (state under WTB_HOME)."""
        from wtb_prefect.settings import get_settings

        settings = settings or get_settings()
        return cls(project.name, project.root, project.file_tracking, settings.project_dir(project.name))

    @property
    def full(self) -> bool:
        return self.config.snapshot_strategy == "full"

    # ─── workspaces ───

    def workspace(self, execution_id: str, *, create: bool = True) -> Path:
        """The execution's workspace; created on first use from the project root's tracked files."""
        path = self.workspaces_dir / execution_id
        self.store.execution_dir(execution_id)  # validates the id
        if create and not path.is_dir():
            tmp = self.workspaces_dir / f".{execution_id}.{os.getpid()}.{threading.get_ident()}.seeding"
            shutil.rmtree(tmp, ignore_errors=True)
            root = self.selection.root
            for rel in self.selection.files(root):
                dest = tmp / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(root / rel, dest)
            for rel in self.selection.paths:  # tracked folders exist even when empty
                if (root / rel).is_dir():
                    (tmp / rel).mkdir(parents=True, exist_ok=True)
            tmp.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(tmp, path)
            except OSError:  # another thread seeded it first
                shutil.rmtree(tmp, ignore_errors=True)
        return path

    def _odb(self, execution_id: str) -> Any:
        with self._odb_lock:
            if execution_id not in self._odbs:
                state = None if self.full else self.store.execution_dir(execution_id) / "state"
                self._odbs[execution_id] = self.store.odb(state)
            return self._odbs[execution_id]

    def close(self, execution_id: str | None = None) -> None:
        """Release the hash-state databases (of one execution, or all)."""
        with self._odb_lock:
            ids = [execution_id] if execution_id else list(self._odbs)
            for eid in ids:
                odb = self._odbs.pop(eid, None)
                if odb is not None:
                    odb.state.close()
                self._last.pop(eid, None)
                self._index.pop(eid, None)

    # ─── snapshots ───

    def snapshot(
        self,
        execution_id: str,
        *,
        node: str | None = None,
        kind: str = "manual",
        checkpoint_id: str | None = None,
        step: int | None = None,
        parent_checkpoint_id: str | None = None,
        supersede: bool = False,
    ) -> FileSnapshot:
        """Snapshot the execution's workspace now.

        With ``supersede``, an earlier snapshot of the same superstep (same
        ``parent_checkpoint_id`` and ``step``, not yet linked to its checkpoint)
        is replaced: one snapshot per checkpoint.

        Raises:
            SnapshotError: hashing or storing failed; earlier snapshots are intact.
        """
        ws = self.workspace(execution_id)
        store = self.store
        started = time.time()
        with store.execution_lock(execution_id):
            records = store.records(execution_id)
            replaced = [
                s
                for s in records
                if supersede
                and s.kind == "node"
                and s.checkpoint_id is None
                and s.parent_checkpoint_id == parent_checkpoint_id
                and s.step == step
            ]
            head_id = store.head(execution_id)
            base = next((s for s in records if s.snapshot_id == head_id and s not in replaced), None)
            if base is None:
                kept = [s for s in records if s not in replaced]
                base = kept[-1] if kept else None
            odb = self._odb(execution_id)
            old = self._entries(execution_id, odb, base)
            # gc must not run between storing the objects and writing the record that keeps them
            with store.objects_shared():
                try:
                    if self.full:
                        tree, stored = store.commit_full(odb, ws, self.selection)
                    else:
                        files = self._scan(execution_id, ws, odb)
                        tree, stored = store.store_tree(odb, files, ws, set(old.values()))
                except Exception as exc:
                    raise SnapshotError(
                        f"snapshot of {ws} (execution {execution_id!r}) failed: {type(exc).__name__}: {exc}. "
                        f"Previous snapshots are intact. Fix: check that {ws} is readable and "
                        f"{store.cache_dir} has free space"
                    ) from exc
                new = {"/".join(k): hi.value for k, _, hi in tree}
                self._last[execution_id] = (tree.hash_info.value, new)
                snap = FileSnapshot(
                    snapshot_id=store.next_id(execution_id),
                    execution_id=execution_id,
                    created_at=started,
                    tree_hash=tree.hash_info.value,
                    nfiles=len(new),
                    total_bytes=sum(m.size or 0 for _, m, _ in tree),
                    bytes_stored=stored,
                    kind=kind,
                    node=node,
                    checkpoint_id=checkpoint_id,
                    step=step,
                    parent_checkpoint_id=parent_checkpoint_id,
                    added=sorted(set(new) - set(old)),
                    modified=sorted(k for k in new.keys() & old.keys() if new[k] != old[k]),
                    deleted=sorted(set(old) - set(new)),
                )
                store.write(snap)
            store.set_head(execution_id, snap.snapshot_id)
            for s in replaced:
                store.delete(s, tombstone=False)
            pruned = self._prune(execution_id)
        if pruned:
            store.gc()
        return snap

    def _scan(self, execution_id: str, ws: Path, odb: Any) -> dict[str, tuple[str, int]]:
        """{relpath: (md5, size)} of the tracked files; only files whose stat changed are hashed.

        Unchanged means same inode, mtime and size (dvc-data's own criterion);
        files unknown to this process go through dvc-data's state db first.
        """
        from dvc_data.fsutils import _localfs_info
        from dvc_data.hashfile.hash import hash_file

        known = self._index.get(execution_id, {})
        index: dict[str, tuple[Any, ...]] = {}
        for rel in self.selection.files(ws):
            path = os.path.join(ws, rel)
            info = _localfs_info(path)
            key = (info["ino"], info["mtime"], info["size"])
            prev = known.get(rel)
            if prev is not None and prev[0] == key:
                index[rel] = prev
            else:
                _, hi = hash_file(path, odb.fs, "md5", state=odb.state, info=info)
                index[rel] = (key, hi.value)
        self._index[execution_id] = index
        return {rel: (oid, key[2]) for rel, (key, oid) in index.items()}

    def _entries(self, execution_id: str, odb: Any, snap: FileSnapshot | None) -> dict[str, str]:
        """{path: oid} of a snapshot; the last one taken is kept in memory (no JSON reload)."""
        from dvc_data.hashfile.hash_info import HashInfo
        from dvc_data.hashfile.tree import Tree

        if snap is None:
            return {}
        last = self._last.get(execution_id)
        if last and last[0] == snap.tree_hash:
            return last[1]
        try:
            tree = Tree.load(odb, HashInfo("md5", snap.tree_hash))
        except Exception:  # a missing base only costs existence checks
            return {}
        return {"/".join(k): hi.value for k, _, hi in tree}

    def _prune(self, execution_id: str) -> int:
        records = self.store.records(execution_id)
        excess = len(records) - self.config.max_snapshots
        if excess <= 0:
            return 0
        head = self.store.head(execution_id)
        victims = [s for s in records if s.snapshot_id != head][:excess]
        for s in victims:
            self.store.delete(s, tombstone=True)
        return len(victims)

    def snapshots(self, execution_id: str) -> list[FileSnapshot]:
        """The execution's snapshots, oldest first."""
        return self.store.records(execution_id)

    # ─── checkpoints ───

    def link_checkpoints(self, execution_id: str, refs: Iterable[CheckpointRef]) -> list[FileSnapshot]:
        """Record which checkpoint each unlinked node snapshot belongs to.

        A snapshot taken after a node of superstep ``s`` that started from
        checkpoint ``P`` belongs to the first checkpoint of step ``s`` whose
        parent is ``P`` written after the snapshot began.
        """
        refs = list(refs)
        linked = []
        with self.store.execution_lock(execution_id):
            for snap in self.store.records(execution_id):
                if snap.checkpoint_id or snap.parent_checkpoint_id is None or snap.step is None:
                    continue
                matches = [
                    r
                    for r in refs
                    if r.parent_checkpoint_id == snap.parent_checkpoint_id
                    and r.step == snap.step
                    and r.created_at >= snap.created_at
                ]
                if matches:
                    snap.checkpoint_id = min(matches, key=lambda r: r.created_at).checkpoint_id
                    self.store.write(snap)
                    linked.append(snap)
        return linked

    def snapshot_for_checkpoint(
        self, execution_id: str, checkpoint_id: str, refs: Iterable[CheckpointRef]
    ) -> FileSnapshot:
        """The snapshot holding the files as they were at ``checkpoint_id``.

        That is the latest snapshot linked to the checkpoint or, when no node
        ran in that step, to its nearest ancestor; before any node, the seed.

        Raises:
            SnapshotNotFoundError: the checkpoint is unknown, or its snapshot was pruned.
        """
        refs = list(refs)
        self.link_checkpoints(execution_id, refs)
        by_id = {r.checkpoint_id: r for r in refs}
        if checkpoint_id not in by_id:
            raise SnapshotNotFoundError(
                f"execution {execution_id!r} has no checkpoint {checkpoint_id!r}. "
                "Fix: pick one from get_checkpoints(execution_id)"
            )
        records = self.store.records(execution_id)
        pruned = {t["checkpoint_id"] for t in self.store.tombstones(execution_id) if t.get("checkpoint_id")}
        current: str | None = checkpoint_id
        while current is not None:
            linked = [s for s in records if s.checkpoint_id == current]
            if linked:
                return max(linked, key=lambda s: s.seq)
            if current in pruned:
                break
            ref = by_id.get(current)
            current = ref.parent_checkpoint_id if ref else None
        else:
            seeds = [s for s in records if s.kind == "seed"]
            if seeds:
                return seeds[0]
        raise SnapshotNotFoundError(
            f"no file snapshot of execution {execution_id!r} covers checkpoint {checkpoint_id!r}: it was pruned "
            f"(max_snapshots={self.config.max_snapshots}) or never taken (commit_on={self.config.commit_on!r}). "
            "Fix: raise file_tracking.max_snapshots, or roll back to a checkpoint listed by get_file_snapshots()"
        )

    # ─── restore ───

    def restore(self, execution_id: str, snapshot_id: str) -> FileSnapshot:
        """Make the workspace's tracked files byte for byte those of the snapshot.

        Files created after the snapshot are removed; untracked and ignored
        files are left alone. Every object is checked before the workspace is touched.

        Raises:
            SnapshotNotFoundError: no such snapshot.
            SnapshotCorruptError: a needed cache object is missing or corrupt.
        """
        snap = self.store.get(execution_id, snapshot_id)
        ws = self.workspace(execution_id)
        odb = self._odb(execution_id)
        with self.store.execution_lock(execution_id):
            with self.store.objects_shared():
                tree = self.store.load_tree(odb, snap)
            self.store.checkout(odb, ws, tree, self.selection)
            self._remove_empty_dirs(ws)
            self.store.set_head(execution_id, snap.snapshot_id)
        return snap

    def _remove_empty_dirs(self, ws: Path) -> None:
        # DVC trees hold files only; folders emptied by the restore go too (tracked roots stay).
        roots = {ws / p for p in self.selection.paths}
        for rel in self.selection.paths:
            top = ws / rel
            if not top.is_dir():
                continue
            for dirpath, _dirs, _files in os.walk(top, topdown=False):
                p = Path(dirpath)
                if p not in roots and not any(p.iterdir()):
                    p.rmdir()

    def rollback(self, execution_id: str, checkpoint_id: str, refs: Iterable[CheckpointRef]) -> FileSnapshot:
        """Restore the files as they were at ``checkpoint_id``; returns the snapshot used."""
        snap = self.snapshot_for_checkpoint(execution_id, checkpoint_id, refs)
        return self.restore(execution_id, snap.snapshot_id)
