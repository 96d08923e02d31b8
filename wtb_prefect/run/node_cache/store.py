"""Where node-call values are kept: in memory for one batch, or a persistent folder or Prefect storage block."""

from __future__ import annotations

from pathlib import Path

from prefect.filesystems import LocalFileSystem, WritableFileSystem
from pydantic import PrivateAttr

from wtb_prefect.define.project import WorkflowProject
from wtb_prefect.errors import ConfigError


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


def cache_dir(state_dir: Path) -> Path:
    """Where persistent node-call values live by default."""
    return Path(state_dir) / "node_cache"


def storage_for(project: WorkflowProject, state_dir: Path) -> WritableFileSystem:
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
