"""Which files are tracked: ``tracked_paths`` minus ``ignore_patterns`` (gitignore syntax)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pathspec

from wtb_prefect.integrations.files.errors import TrackedPathError

__all__ = ["Selection"]


def _normalize(raw: str, index: int, root: Path) -> str:
    field = f"file_tracking.tracked_paths[{index}]"
    if not isinstance(raw, str) or not raw.strip():
        raise TrackedPathError(field, f"is {raw!r}", "give a path relative to the project root, e.g. './outputs/'")
    candidate = Path(raw)
    absolute = (candidate if candidate.is_absolute() else root / candidate).resolve()
    try:
        rel = absolute.relative_to(root)
    except ValueError:
        raise TrackedPathError(
            field,
            f"{raw!r} resolves to {absolute}, outside the project root {root}",
            "track only paths inside the project root, or set WorkflowProject(root=...) to a folder that contains it",
        ) from None
    if not absolute.exists():
        raise TrackedPathError(
            field,
            f"{raw!r} does not exist (looked for {absolute})",
            f"create it first (mkdir -p {absolute}) or remove it from tracked_paths",
        )
    return rel.as_posix()


class Selection:
    """The tracked part of a folder laid out like the project root.

    Also implements dvc-data's ``Ignore`` protocol (``walk``/``find``), so DVC's
    own tree building and checkout see exactly the tracked files.
    """

    def __init__(
        self, root: Path, tracked_paths: Sequence[str], ignore_patterns: Sequence[str], exclude: Sequence[Path] = ()
    ) -> None:
        """Validate ``tracked_paths`` against ``root``; folders in ``exclude`` (e.g. WTB's
        own state folder inside the project) are never tracked.

        Raises:
            TrackedPathError: a path that is empty, outside ``root`` or missing.
        """
        self.root = Path(root).resolve()
        normalized = [_normalize(p, i, self.root) for i, p in enumerate(tracked_paths)]
        # "." tracks the whole root; otherwise drop paths nested in another tracked path.
        self.paths: tuple[str, ...] = tuple(
            sorted(
                {p for p in normalized if not any(p != q and (q == "." or p.startswith(q + "/")) for q in normalized)}
            )
        )
        self.spec = pathspec.GitIgnoreSpec.from_lines(list(ignore_patterns))
        self._files: dict[str, bool] = {}
        self._excluded = set()
        for folder in exclude:
            try:
                self._excluded.add(Path(folder).resolve().relative_to(self.root).as_posix())
            except ValueError:
                pass
        self._dirs: dict[str, bool] = {}

    # ─── membership ───

    def _covered(self, rel: str) -> bool:
        return any(t == "." or rel == t or rel.startswith(t + "/") for t in self.paths)

    def _ancestor(self, rel: str) -> bool:
        return rel == "" or any(t != "." and t.startswith(rel + "/") for t in self.paths)

    def keep_dir(self, rel: str) -> bool:
        """Whether the walk descends into the directory ``rel`` (posix, relative)."""
        verdict = self._dirs.get(rel)
        if verdict is None:
            if rel in self._excluded:
                verdict = False
            elif self._covered(rel):
                verdict = not self.spec.match_file(rel + "/")
            else:
                verdict = self._ancestor(rel)
            self._dirs[rel] = verdict
        return verdict

    def keep_file(self, rel: str) -> bool:
        """Whether the file ``rel`` (posix, relative) is tracked."""
        verdict = self._files.get(rel)
        if verdict is None:  # snapshots see the same names again and again: match each once
            verdict = self._covered(rel) and not self.spec.match_file(rel)
            if len(self._files) < 1_000_000:
                self._files[rel] = verdict
        return verdict

    # ─── walking ───

    def _walk(self, base: str) -> Iterator[tuple[str, str, list[str], list[str]]]:
        """(dirpath, posix prefix relative to ``base``, kept subdirs, kept files), pruned as it goes."""
        base = os.path.abspath(base)
        cut = len(base) + 1
        for dirpath, dirnames, filenames in os.walk(base):
            prefix = dirpath[cut:].replace(os.sep, "/") + "/" if dirpath != base else ""
            dirnames[:] = sorted(d for d in dirnames if self.keep_dir(prefix + d))
            yield dirpath, prefix, dirnames, sorted(f for f in filenames if self.keep_file(prefix + f))

    def walk(self, fs: Any, path: str, **kwargs: Any) -> Iterator[tuple[str, list[str], list[str]]]:
        """``os.walk`` of ``path`` restricted to the tracked files (dvc-data ``Ignore.walk``)."""
        for dirpath, _prefix, dirnames, files in self._walk(path):
            yield dirpath, dirnames, files

    def find(self, fs: Any, path: str, **kwargs: Any) -> Iterator[str]:
        """Every tracked file under ``path`` (dvc-data ``Ignore.find``)."""
        for dirpath, _prefix, _dirs, files in self._walk(path):
            for name in files:
                yield os.path.join(dirpath, name)

    def files(self, base: Path) -> Iterator[str]:
        """Relative posix paths of the tracked files under ``base``."""
        for _dirpath, prefix, _dirs, files in self._walk(os.fspath(base)):
            for name in files:
                yield prefix + name
