"""What a persistent node cache holds, per project, and deleting it (``wtb cache info | clear``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect.filesystems import LocalFileSystem

from wtb_prefect.errors import ConfigError
from wtb_prefect.run.node_cache.store import cache_dir, load_storage_block


def cache_location(state_dir: Path, storage: str | None) -> tuple[Any, str]:
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
    return cache_rows(*cache_location(state_dir, storage), project)


def cache_rows(files: Any, root: str, project: str | None) -> list[dict[str, Any]]:
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
    files, root = cache_location(state_dir, storage)  # loads the block once
    removed = sum(row["entries"] for row in cache_rows(files, root, project))
    target = f"{root}/{project}" if project is not None else root
    if files.exists(target):
        files.rm(target, recursive=True)
    return removed
