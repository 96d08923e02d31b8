"""The code a Ray job of wtb_prefect ships to nodes that do not share the driver's files.

A node function is pickled by reference: a worker unpickling it imports its
module. On the driver's own machine the worker finds that module through the
driver's source folders (``PYTHONPATH``); on another machine it exists only if
it travels with the job. This module works out what travels, as Ray's
``runtime_env``:

- ``working_dir``: the driver's current folder, when modules the driver has
  loaded come from it (a project checkout, the folder ``wtb batch`` runs in);
- ``py_modules``: every other top-level package or single-file module the
  driver loaded from a source folder of its own (not an installed package),
  and ``wtb_prefect`` itself, so the worker code on every node is the
  driver's exact version whatever the node has installed.

Ray uploads each folder once, content-addressed (an unchanged folder is not
uploaded again), and each node downloads it once. Installed packages are not
shipped: the nodes must have them (see the cluster docs).

Folders that never belong on a node are excluded: the state folder,
virtualenvs, ``.git``, caches, MLflow and DVC stores, build output; Ray also
honours ``.gitignore`` and ``.rayignore``. A payload over Ray's limit is a
:class:`CodePayloadTooLargeError` naming the folder and the fix, raised before
the batch starts.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wtb_prefect.errors import ConfigError
from wtb_prefect.services import ray_private

__all__ = [
    "DEFAULT_EXCLUDES",
    "CodePayload",
    "CodePayloadTooLargeError",
    "code_payload",
    "explain_upload_error",
    "merge_runtime_env",
    "payload_limit",
    "ship_mode",
]

logger = logging.getLogger(__name__)

SHIP_ENV = "WTB_SHIP_CODE"

# gitignore-style patterns, relative to each shipped folder
DEFAULT_EXCLUDES = [
    ".git",
    ".venv",
    "venv",
    ".wtb",
    "__pycache__",
    "*.pyc",
    ".dvc/cache",
    ".dvc/tmp",
    "mlruns",
    "mlartifacts",
    "mlflow.db",
    "node_modules",
    ".pytest_cache",
    ".ruff_cache",
    ".mypy_cache",
    ".tox",
    "*.egg-info",
    "dist",
    "build",
]


class CodePayloadTooLargeError(ConfigError):
    """The code shipped to the Ray nodes is over the size Ray accepts for one package.

    Attributes:
        folder: the folder whose package is too large.
        size: its size in bytes (files after the excludes, uncompressed; None when Ray measured it zipped).
        limit: Ray's limit in bytes.
    """

    def __init__(self, folder: str, size: int | None, limit: int) -> None:
        self.folder = folder
        self.size = size
        self.limit = limit
        held = f"holds {size / 2**20:.0f} MiB of files after the excludes" if size else "zips to more than that"
        super().__init__(
            "RayConfig.runtime_env (code shipped to the Ray nodes)",
            f"the folder {folder} {held}; Ray ships at most {limit / 2**20:.0f} MiB per folder "
            "to the nodes of a cluster",
            f"run the driver from the project's own folder, or exclude the large files (list them in "
            f"{folder}/.rayignore or .gitignore, or in RayConfig.runtime_env={{'excludes': [...]}}), or put "
            "large data on storage the nodes share",
        )


def ship_mode() -> str:
    """``WTB_SHIP_CODE``: "auto" (ship when a node is on another machine), "always" or "never"."""
    mode = os.environ.get(SHIP_ENV, "auto").strip().lower() or "auto"
    if mode not in {"auto", "always", "never"}:
        raise ConfigError(SHIP_ENV, f"is {mode!r}", "set it to 'auto', 'always' or 'never'")
    return mode


def payload_limit() -> int:
    """The largest package Ray uploads to a cluster, in bytes (its gRPC message limit)."""
    try:
        return ray_private.package_size_limit()
    except ImportError:  # another Ray version: its documented default
        return 512 * 1024 * 1024


def _installed(path: Path) -> bool:
    """Whether ``path`` is part of an installed Python (an interpreter or a site-packages folder)."""
    prefixes = {Path(p).resolve() for p in {sys.prefix, sys.base_prefix, sys.exec_prefix}}
    if any(path == p or p in path.parents for p in prefixes):
        return True
    return "site-packages" in path.parts or "dist-packages" in path.parts


def _module_location(module: Any) -> tuple[Path, Path] | None:
    """(what to ship, the sys.path folder it is imported from) of a top-level module, or None."""
    file = getattr(module, "__file__", None)
    if file:
        path = Path(file).resolve()
        if path.name == "__init__.py":
            return path.parent, path.parent.parent
        if path.suffix == ".py":
            return path, path.parent
        return None  # an extension module: installed, never shipped
    paths = list(getattr(module, "__path__", []) or [])  # a namespace package
    if len(paths) == 1:
        folder = Path(paths[0]).resolve()
        return folder, folder.parent
    return None


@dataclass
class CodePayload:
    """What a job ships: its ``working_dir``, its ``py_modules`` and the excludes applied to both."""

    working_dir: str | None = None
    py_modules: list[str] = field(default_factory=list)
    excludes: list[str] = field(default_factory=list)

    def runtime_env(self) -> dict[str, Any]:
        """The payload as Ray ``runtime_env`` fields."""
        env: dict[str, Any] = {}
        if self.working_dir:
            env["working_dir"] = self.working_dir
        if self.py_modules:
            env["py_modules"] = list(self.py_modules)
        if env:
            env["excludes"] = list(self.excludes)
        return env

    def folders(self) -> list[str]:
        """Every file or folder the payload ships."""
        return [p for p in [self.working_dir, *self.py_modules] if p]

    def check_size(self, limit: int | None = None) -> dict[str, int]:
        """The size of each shipped folder after the excludes; raises if one is over Ray's limit.

        Files are walked the way Ray packs them (its own excludes and
        ``.gitignore`` handling). Ray's limit applies to the zipped package,
        so a folder over it unzipped is refused here only when it is over it
        by file sizes; one that zips over it is refused by Ray at upload and
        turned into the same error by :func:`explain_upload_error`.

        Raises:
            CodePayloadTooLargeError: names the folder and the fix.
        """
        limit = limit or payload_limit()
        sizes = {folder: _size(Path(folder), self.excludes) for folder in self.folders()}
        for folder, size in sizes.items():
            if size >= limit:
                raise CodePayloadTooLargeError(folder, size, limit)
        return sizes


def _size(path: Path, excludes: list[str]) -> int:
    if path.is_file():
        return path.stat().st_size
    total = 0

    def add(item: Path) -> None:
        nonlocal total
        if item.is_file():
            total += item.stat().st_size

    try:
        include_gitignore = os.environ.get("RAY_RUNTIME_ENV_IGNORE_GITIGNORE", "0") != "1"
        ray_private.walk_package(path, excludes, add, include_gitignore=include_gitignore)
    except ImportError:  # another Ray version: every file counts
        total = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return total


def explain_upload_error(exc: BaseException, payload: CodePayload) -> BaseException:
    """Ray's refusal of a package over its size limit as :class:`CodePayloadTooLargeError`; else ``exc``."""
    text = str(exc)
    if "exceeds the maximum size" not in text and "Package size" not in text:
        return exc
    folder = next((f for f in payload.folders() if f in text), payload.folders()[0] if payload.folders() else "?")
    return CodePayloadTooLargeError(folder, None, payload_limit())


def code_payload(state_dir: Path | None = None, cwd: Path | None = None) -> CodePayload:
    """The code this driver ships: its loaded source modules, by the folders they come from.

    ``state_dir`` (the WTB state folder) is excluded when it lies inside a
    shipped folder.
    """
    cwd = (cwd or Path.cwd()).resolve()
    roots = {cwd} | {Path(p).resolve() for p in sys.path if p and os.path.isdir(p)}
    roots = {r for r in roots if not _installed(r)}
    working_dir: Path | None = None
    modules: dict[str, Path] = {}
    for name, module in list(sys.modules.items()):
        if "." in name or name.startswith("__") or module is None:  # __main__, __mp_main__: the script itself
            continue
        location = _module_location(module)
        if location is None:
            continue
        shipped, root = location
        if root not in roots or _installed(shipped):
            continue
        if root == cwd:
            working_dir = cwd
        else:
            modules[name] = shipped
    own = Path(__file__).resolve().parents[1]  # the wtb_prefect package folder
    if working_dir is None or working_dir not in own.parents:
        modules.setdefault("wtb_prefect", own)
    excludes = list(DEFAULT_EXCLUDES)
    if state_dir is not None and working_dir is not None:
        state = Path(state_dir).resolve()
        if state == working_dir or working_dir in state.parents:
            excludes.append("/" + state.relative_to(working_dir).as_posix())
    inside = [p for p in modules.values() if working_dir is not None and working_dir in p.parents]
    py_modules = sorted(str(p) for p in modules.values() if p not in inside)
    return CodePayload(str(working_dir) if working_dir else None, py_modules, excludes)


def merge_runtime_env(
    ours: Mapping[str, Any], user: Mapping[str, Any] | None = None, job: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The job's ``runtime_env``: wtb_prefect's fields, the user's ``RayConfig.runtime_env`` merged in.

    The user's ``env_vars`` are added to (and win over) ours; their
    ``py_modules`` and ``excludes`` are added to ours; any other field they
    set (``working_dir``, ``pip``, ``uv``, ``container``, ...) is theirs.
    ``job`` is the runtime env of the Ray job this driver runs in (``ray job
    submit``): Ray refuses a driver that sets a field its job sets, so those
    fields (and env var names) are left to the job's.
    """
    merged: dict[str, Any] = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in ours.items()}
    for key, value in (user or {}).items():
        if key == "env_vars":
            merged["env_vars"] = {**merged.get("env_vars", {}), **dict(value)}
        elif key in ("py_modules", "excludes"):
            merged[key] = list(dict.fromkeys([*merged.get(key, []), *value]))
        else:
            merged[key] = value
    for key, value in (job or {}).items():
        if key == "env_vars" and "env_vars" in merged:
            kept = {k: v for k, v in merged["env_vars"].items() if k not in dict(value)}
            merged["env_vars"] = kept
        elif key in merged and key != "env_vars":
            merged.pop(key)
    if "excludes" in merged and not ({"working_dir", "py_modules"} & merged.keys()):
        merged.pop("excludes")
    if not merged.get("env_vars"):
        merged.pop("env_vars", None)
    return merged
