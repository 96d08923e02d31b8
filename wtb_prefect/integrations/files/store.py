"""The DVC side of file tracking: repository, object cache, snapshot records, locks.

Snapshots are DVC directory objects (``<md5>.dir`` trees) in the repository's
own cache (``.dvc/cache/files/md5``), built and checked out with dvc-data's
machinery (``build`` with its inode/mtime/size state db, ``transfer``,
``checkout``, ``gc``) rather than with ``dvc add``: ``dvc add`` takes the
repository lock, so concurrent executions would fail on it, and it costs a
process start per call. The repository lock is never taken here; concurrent
writers coordinate through two flock files of our own:

* ``objects.lock``: shared while objects are written or read (snapshot,
  restore), exclusive while unreferenced objects are garbage-collected;
* ``<execution>/.lock``: exclusive per execution (its records and workspace).
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from wtb_prefect.integrations.files.errors import FileTrackingError, SnapshotCorruptError, SnapshotNotFoundError

__all__ = ["FileSnapshot", "SnapshotStore"]

_LINK_TYPES = ["reflink", "copy"]  # never hardlink/symlink: nodes edit files in place
_init_lock = threading.Lock()


@dataclass
class FileSnapshot:
    """One snapshot of an execution's tracked files (a DVC directory object)."""

    snapshot_id: str
    execution_id: str
    created_at: float
    tree_hash: str
    """DVC md5 of the directory object (``....dir``); the content id of the snapshot."""
    nfiles: int
    total_bytes: int
    bytes_stored: int
    """Bytes this snapshot added to the cache (0 when nothing changed)."""
    kind: str = "node"
    """"seed" (execution start), "node" (after a node), "manual", "rollback" (files restored for a fork)."""
    node: str | None = None
    checkpoint_id: str | None = None
    step: int | None = None
    parent_checkpoint_id: str | None = None
    added: list[str] = field(default_factory=list)
    modified: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    @property
    def files_changed(self) -> int:
        """Files added, modified or deleted since the snapshot before it."""
        return len(self.added) + len(self.modified) + len(self.deleted)

    @property
    def seq(self) -> int:
        return int(self.snapshot_id.split("-")[1])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FileSnapshot:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@contextlib.contextmanager
def _flock(path: Path, exclusive: bool) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)  # atomic: a reader sees the old record or the new one


class SnapshotStore:
    """A DVC repository used as the snapshot store of one or more projects."""

    def __init__(self, repo_dir: Path) -> None:
        """Open the DVC repository at ``repo_dir``, creating it (``dvc init --no-scm``) on first use."""
        self.repo_dir = Path(repo_dir).resolve()
        self.meta_dir = self.repo_dir / ".wtb"
        self.records_dir = self.meta_dir / "snapshots"
        self.cache_dir = self._open_repo()
        self._tree_refs: dict[str, int] = {}
        self._tree_lock = threading.Lock()

    def _open_repo(self) -> Path:
        self.repo_dir.mkdir(parents=True, exist_ok=True)
        dvc_dir = self.repo_dir / ".dvc"
        with _init_lock, _flock(self.repo_dir / ".wtb-init.lock", exclusive=True):
            if not dvc_dir.is_dir():
                from dvc.repo import Repo  # heavy import: only on first use of a repository

                try:
                    with contextlib.redirect_stdout(io.StringIO()):  # "Initialized DVC repository."
                        Repo.init(os.fspath(self.repo_dir), no_scm=True)
                except Exception as exc:
                    raise FileTrackingError(
                        f"could not create a DVC repository at {self.repo_dir}: {exc}. "
                        "Fix: point file_tracking.repository_path at a writable folder"
                    ) from exc
            from dvc.config import Config

            try:
                cache_root = Config(os.fspath(dvc_dir))["cache"].get("dir")
            except Exception as exc:
                raise FileTrackingError(
                    f"{self.repo_dir} is not a usable DVC repository: {exc}. "
                    "Fix: run `dvc init --no-scm` there or choose another file_tracking.repository_path"
                ) from exc
        base = Path(cache_root) if cache_root else dvc_dir / "cache"
        cache = (base if base.is_absolute() else dvc_dir / base) / "files" / "md5"  # DVC 3 layout
        cache.mkdir(parents=True, exist_ok=True)
        return cache.resolve()

    # ─── object database ───

    def odb(self, state_dir: Path | None) -> Any:
        """The cache as a dvc-data object DB; with ``state_dir``, unchanged files are not re-hashed."""
        from dvc_data.hashfile.db import get_odb
        from dvc_data.hashfile.state import State, StateNoop
        from dvc_objects.fs.local import LocalFileSystem

        state = State(os.fspath(self.repo_dir), os.fspath(state_dir)) if state_dir else StateNoop()
        return get_odb(LocalFileSystem(), os.fspath(self.cache_dir), state=state, hash_name="md5", type=_LINK_TYPES)

    @contextlib.contextmanager
    def objects_shared(self) -> Iterator[None]:
        """Hold while writing or reading objects (no garbage collection meanwhile)."""
        with _flock(self.meta_dir / "objects.lock", exclusive=False):
            yield

    def commit_full(self, odb: Any, workspace: Path, ignore: Any) -> tuple[Any, int]:
        """Hash every tracked file of ``workspace`` and check every object, like ``dvc commit``.

        Returns the DVC directory object and the bytes newly stored.
        """
        from dvc_data.hashfile.build import build
        from dvc_data.hashfile.transfer import transfer
        from dvc_data.hashfile.tree import Tree

        staging, _meta, tree = build(odb, os.fspath(workspace), odb.fs, "md5", ignore=ignore)
        assert isinstance(tree, Tree)
        oid = tree.hash_info.value
        sizes = {hi.value: (meta.size or 0) for _, meta, hi in tree}
        with self._tree_lock:
            self._tree_refs[oid] = self._tree_refs.get(oid, 0) + 1
        try:
            with self.objects_shared():
                result = transfer(staging, odb, {tree.hash_info}, shallow=False, hardlink=False)
        finally:
            self._release_staged_tree(staging, oid)
        if result.failed:
            raise OSError(f"could not store {len(result.failed)} objects in {self.cache_dir}")
        return tree, sum(sizes.get(hi.value, 0) for hi in result.transferred)

    def store_tree(
        self, odb: Any, files: dict[str, tuple[str, int]], workspace: Path, stored: set[str]
    ) -> tuple[Any, int]:
        """Store the directory object of ``files`` ({relpath: (md5, size)}) and the file objects it lacks.

        Only objects neither in ``stored`` (the previous snapshot's files, which
        gc keeps) nor already in the cache are copied, so the cost follows the
        changed bytes. The directory object is written last, as ``transfer()``
        does: an existing one is complete. Returns (tree, bytes stored).
        """
        from dvc_data.hashfile.hash_info import HashInfo
        from dvc_data.hashfile.meta import Meta
        from dvc_data.hashfile.tree import Tree

        tree = Tree()
        for rel, (oid, size) in files.items():
            tree.add(tuple(rel.split("/")), Meta(size=size), HashInfo("md5", oid))
        tree.digest()  # the same .dir hash `dvc add` gives the folder
        try:
            with self.objects_shared():
                if odb.exists(tree.oid):
                    return tree, 0
                by_oid = {oid: (rel, size) for rel, (oid, size) in files.items()}
                missing = [o for o in by_oid if o not in stored and not odb.exists(o)]
                if missing:
                    odb.add([os.path.join(workspace, by_oid[o][0]) for o in missing], odb.fs, missing, hardlink=False)
                odb.add(tree.path, tree.fs, tree.oid, hardlink=False)
                return tree, sum(by_oid[o][1] for o in missing)
        finally:
            with contextlib.suppress(Exception):
                tree.fs.rm_file(tree.path)

    def _release_staged_tree(self, staging: Any, oid: str) -> None:
        # build() parks the directory object in a process-global memory fs and never frees it.
        with self._tree_lock:
            self._tree_refs[oid] -= 1
            if self._tree_refs[oid]:
                return
            del self._tree_refs[oid]
            with contextlib.suppress(Exception):
                staging.fs.rm_file(staging.oid_to_path(oid))

    def load_tree(self, odb: Any, snapshot: FileSnapshot) -> Any:
        """The snapshot's directory object, every file checked against its hash.

        Raises:
            SnapshotCorruptError: the directory object or a file object is missing or corrupt.
        """
        from dvc_data.hashfile.hash import hash_file
        from dvc_data.hashfile.hash_info import HashInfo
        from dvc_data.hashfile.tree import Tree

        try:
            tree = Tree.load(odb, HashInfo("md5", snapshot.tree_hash))
        except Exception as exc:
            raise SnapshotCorruptError(
                snapshot.snapshot_id,
                [f"directory object {snapshot.tree_hash} is missing or unreadable ({exc})"],
                os.fspath(self.cache_dir),
            ) from exc
        problems = []
        for key, _meta, hi in tree:
            path = odb.oid_to_path(hi.value)
            name = "/".join(key)
            if not os.path.exists(path):
                problems.append(f"{name}: object {hi.value} is missing ({path})")
                continue
            _, actual = hash_file(path, odb.fs, "md5", state=odb.state)
            if actual.value != hi.value:
                problems.append(f"{name}: object {path} is corrupt (content hash {actual.value}, expected {hi.value})")
        if problems:
            raise SnapshotCorruptError(snapshot.snapshot_id, problems, os.fspath(self.cache_dir))
        return tree

    def checkout(self, odb: Any, workspace: Path, tree: Any, ignore: Any) -> None:
        """Make the tracked files of ``workspace`` exactly ``tree`` (extra tracked files are removed)."""
        from dvc_data.hashfile.checkout import checkout

        with self.objects_shared():
            checkout(os.fspath(workspace), odb.fs, tree, odb, force=True, ignore=ignore, state=odb.state)

    def gc(self) -> int:
        """Remove cache objects that no snapshot record of this repository refers to."""
        from dvc_data.hashfile.gc import gc
        from dvc_data.hashfile.hash_info import HashInfo
        from dvc_data.hashfile.tree import Tree

        odb = self.odb(None)
        with _flock(self.meta_dir / "objects.lock", exclusive=True):
            used: set[HashInfo] = set()
            for tree_hash in {s.tree_hash for s in self.all_records()}:
                hi = HashInfo("md5", tree_hash)
                used.add(hi)
                with contextlib.suppress(FileNotFoundError):
                    used.update(entry_hi for _, _, entry_hi in Tree.load(odb, hi))
            # shallow: `used` already lists each kept tree's files (as `dvc gc` passes them)
            return gc(odb, used, shallow=True)

    # ─── records ───

    def execution_dir(self, execution_id: str) -> Path:
        if not execution_id or "/" in execution_id or execution_id.startswith("."):
            raise FileTrackingError(f"execution id {execution_id!r} cannot name a folder. Fix: use a plain id")
        return self.records_dir / execution_id

    @contextlib.contextmanager
    def execution_lock(self, execution_id: str) -> Iterator[None]:
        """Exclusive access to one execution's records and workspace."""
        with _flock(self.execution_dir(execution_id) / ".lock", exclusive=True):
            yield

    def next_id(self, execution_id: str) -> str:
        """A new snapshot id of the execution (call under its lock)."""
        counter = self.execution_dir(execution_id) / "seq"
        seq = int(counter.read_text()) + 1 if counter.exists() else 1
        counter.write_text(str(seq))
        return f"snap-{seq:05d}"

    def write(self, snapshot: FileSnapshot) -> None:
        _write_json(self.execution_dir(snapshot.execution_id) / f"{snapshot.snapshot_id}.json", snapshot.to_dict())

    def delete(self, snapshot: FileSnapshot, *, tombstone: bool) -> None:
        """Drop a record; a tombstone remembers which checkpoint it covered (for clear errors)."""
        exec_dir = self.execution_dir(snapshot.execution_id)
        if tombstone:
            stones = self.tombstones(snapshot.execution_id)
            stones.append(
                {k: getattr(snapshot, k) for k in ("snapshot_id", "checkpoint_id", "parent_checkpoint_id", "step")}
            )
            _write_json(exec_dir / "pruned.json", stones)
        with contextlib.suppress(FileNotFoundError):
            (exec_dir / f"{snapshot.snapshot_id}.json").unlink()

    def tombstones(self, execution_id: str) -> list[dict[str, Any]]:
        path = self.execution_dir(execution_id) / "pruned.json"
        return json.loads(path.read_text()) if path.exists() else []

    def records(self, execution_id: str) -> list[FileSnapshot]:
        """The execution's snapshots, oldest first."""
        exec_dir = self.execution_dir(execution_id)
        if not exec_dir.is_dir():
            return []
        snaps = []
        for path in exec_dir.glob("snap-*.json"):
            with contextlib.suppress(FileNotFoundError):
                snaps.append(FileSnapshot.from_dict(json.loads(path.read_text())))
        return sorted(snaps, key=lambda s: s.seq)

    def get(self, execution_id: str, snapshot_id: str) -> FileSnapshot:
        path = self.execution_dir(execution_id) / f"{snapshot_id}.json"
        try:
            return FileSnapshot.from_dict(json.loads(path.read_text()))
        except FileNotFoundError:
            known = [s.snapshot_id for s in self.records(execution_id)]
            raise SnapshotNotFoundError(
                f"execution {execution_id!r} has no snapshot {snapshot_id!r} (known: {known}). "
                "Fix: pick one from get_file_snapshots(execution_id)"
            ) from None

    def head(self, execution_id: str) -> str | None:
        """The snapshot the workspace last matched (taken or restored)."""
        path = self.execution_dir(execution_id) / "head"
        return path.read_text().strip() if path.exists() else None

    def set_head(self, execution_id: str, snapshot_id: str) -> None:
        path = self.execution_dir(execution_id) / "head"
        tmp = path.with_name(".head.tmp")
        tmp.write_text(snapshot_id)
        os.replace(tmp, path)

    def all_records(self) -> Iterable[FileSnapshot]:
        if not self.records_dir.is_dir():
            return []
        return [s for d in self.records_dir.iterdir() if d.is_dir() for s in self.records(d.name)]
