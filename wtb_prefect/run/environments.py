"""uv-built Python environments for nodes, and how a node runs inside one on Ray.

How a node runs in its environment
----------------------------------
For each distinct :class:`~wtb_prefect.config.EnvSpec` the manager builds a
virtual environment with uv (``uv venv`` + ``uv pip install``) once, keyed by
a hash of everything that decides its contents, under ``WTB_HOME/envs`` (or
``WTB_ENV_DIR`` for a cache shared between projects and machines' users).
The node's Ray task then gets ``runtime_env={"py_executable": <env python>,
"env_vars": spec.env_vars}``: Ray starts a worker pool of that interpreter for
it, and the task body runs there.

The environment is an *overlay* on the driver's environment, like Ray's own
``pip``/``uv`` runtime envs (which use ``virtualenv --system-site-packages``):
a ``.pth`` file appends the driver's site-packages *after* the env's own, so

- what the env installs wins (a variant can test another version of a package
  the driver also has), and what it adds is importable only in nodes of that
  env;
- the worker still imports ``ray``, ``cloudpickle`` and whatever the node's
  module and the pickled state need (langgraph, pydantic, the user's code),
  which a bare env would not have.

Why not Ray's ``{"uv": [...]}`` plugin: it builds inside the first task (so a
dependency that does not resolve fails in the middle of a batch, once per
node), per Ray session (rebuilt after every restart), with no lock
or audit we could put in the provenance. Here the env is built before the batch
starts, a bad spec is a typed error with uv's message, and the env and its lock
outlive the Ray session.

Limits: the interpreter must be the cluster's Python (Ray requires it), and
the env path must exist on every Ray node that runs the node.

Nodes on other machines
-----------------------
When the joined cluster has nodes that do not see the driver's files
(:func:`wtb_prefect.services.ray_cluster.files_shared` is false), the env is
still resolved and built on the driver (a bad spec fails before the batch,
its lock goes into the provenance), but a node call is sent with Ray's own
``{"uv": {"packages": <the lock's exact pins>}}`` instead
(:func:`placed_options`): Ray installs those exact versions on each node that
runs the call, once per node and lock, before the worker starts, so the build
counts in the call's queue time, not in its timeout. A build that fails there
is an :class:`EnvironmentBuildError` naming the node and uv's message
(:func:`environment_setup_error`).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import hashlib
import json
import logging
import os
import platform
import shutil
import site
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from wtb_prefect.config import EnvironmentConfig, EnvSpec
from wtb_prefect.errors import ConfigError, WTBError
from wtb_prefect.services.ray_private import DEFAULT_WORKER_MODULE

__all__ = [
    "EnvironmentBuildError",
    "EnvironmentManager",
    "NodeEnvironment",
    "PythonVersionError",
    "default_env_root",
    "environment_setup_error",
    "get_environment_manager",
    "placed_options",
    "prepare_node_environment",
]

logger = logging.getLogger(__name__)

_FORMAT = 1  # bump when the layout of a built env changes: old envs are rebuilt
_AUDIT = "wtb-env.json"  # written last: its presence marks a complete env
_LOCK = "lock.txt"
_USES = "used_by.jsonl"
_BASE_PTH = "_wtb_base.pth"
_CHECK_IMPORTS = f"import {DEFAULT_WORKER_MODULE}, cloudpickle, wtb_prefect.worker.call"


class EnvironmentBuildError(WTBError, RuntimeError):
    """A node's environment cannot be built; the message carries uv's own output.

    Attributes:
        used_by: which node (and variant) asked for the environment.
        uv_output: what uv printed (empty when uv was not reached).
    """

    def __init__(self, message: str, *, used_by: str = "", uv_output: str = "") -> None:
        self.used_by = used_by
        self.uv_output = uv_output
        super().__init__(message)


class PythonVersionError(EnvironmentBuildError):
    """``EnvSpec.python_version`` names a Python this Ray cluster cannot run."""


def default_env_root() -> Path:
    """Where environments are built: ``WTB_ENV_DIR``, else ``<WTB_HOME>/envs``."""
    shared = os.environ.get("WTB_ENV_DIR")
    if shared:
        return Path(shared).expanduser().resolve()
    from wtb_prefect.settings import get_settings

    return get_settings().state_dir / "envs"


def _uv_bin() -> str:
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if found is None:
            raise EnvironmentBuildError(
                "uv is not installed: environments are built with uv. Fix: `pip install uv`"
            ) from None
        return found


def _base_site_packages() -> list[str]:
    """The driver's site-packages folders, which every env sees after its own."""
    paths = [p for p in site.getsitepackages() if os.path.isdir(p)]
    if site.ENABLE_USER_SITE and os.path.isdir(site.getusersitepackages()):
        paths.append(site.getusersitepackages())
    return paths


def _running_version() -> str:
    return platform.python_version()


@dataclass(frozen=True)
class NodeEnvironment:
    """The environment one node runs in: what compilation puts into its plan.

    ``key`` is None when the spec installs nothing (only ``env_vars``): the
    node then runs in the driver's environment with those variables.
    """

    spec: EnvSpec
    python_version: str
    key: str | None = None
    path: str | None = None
    python: str | None = None
    lock: tuple[str, ...] = ()
    lock_hash: str | None = None

    def ray_runtime_env(self) -> dict[str, Any]:
        """The task-level Ray ``runtime_env`` (merged by Ray with the job's, env_vars per key)."""
        runtime_env: dict[str, Any] = {}
        if self.python is not None:
            runtime_env["py_executable"] = self.python
        if self.spec.env_vars:
            runtime_env["env_vars"] = dict(self.spec.env_vars)
        return runtime_env

    def provenance(self) -> dict[str, Any]:
        """What a result records about its environment: spec, env key and resolved lock."""
        return {
            "spec": self.spec.model_dump(),
            "python_version": self.python_version,
            "key": self.key,
            "lock_hash": self.lock_hash,
            "lock": list(self.lock),
        }


class EnvironmentManager:
    """Builds uv environments once per distinct spec and hands out the built ones.

    One manager per root folder per process (:func:`get_environment_manager`);
    processes sharing a root coordinate through a file lock per env.

    Example:
        ```python
        manager = get_environment_manager()
        env = manager.ensure(EnvSpec(dependencies=["rank-bm25>=0.2"]), used_by="rag/retriever:bm25")
        env.ray_runtime_env()  # {"py_executable": ".../envs/<key>/bin/python"}
        manager.audit()[env.key]["lock"]  # ["numpy==2.4.6", "rank-bm25==0.2.2"]
        ```
    """

    def __init__(self, root: Path | str, *, uv: str | None = None, timeout_s: float = 900.0) -> None:
        self.root = Path(root).expanduser().resolve()
        self.uv = uv or _uv_bin()
        self.timeout_s = timeout_s
        self.build_count = 0
        self._lock = threading.Lock()
        self._built_here: set[str] = set()
        self._cleanup: set[str] = set()
        self._atexit = False
        self._uses: set[tuple[str, str]] = set()

    # ─── Public surface ───

    def key_of(self, spec: EnvSpec, *, used_by: str = "") -> str:
        """The hash naming the env of ``spec`` (env_vars do not change the env's contents)."""
        return self._key(spec, self._requirements(spec, used_by))

    def ensure(
        self,
        spec: EnvSpec,
        *,
        used_by: str = "",
        reuse_existing: bool = True,
        cleanup_on_exit: bool = False,
    ) -> NodeEnvironment:
        """The built environment of ``spec``, building it first when needed.

        With ``reuse_existing=False`` an env left by an earlier process is
        rebuilt (once per process; later calls here reuse that build).

        Raises:
            PythonVersionError: ``python_version`` is not the cluster's Python.
            EnvironmentBuildError: a missing requirements file, a dependency
                that does not resolve or an install that fails (uv's message).
        """
        version = check_python_version(spec, uv=self.uv, used_by=used_by)
        requirements = self._requirements(spec, used_by)
        if not spec.dependencies and requirements is None:
            return NodeEnvironment(spec=spec, python_version=version)
        key = self._key(spec, requirements)
        path = self.root / key
        with self._lock, self._file_lock(key):
            audit = self._read_audit(path)
            fresh = audit is not None and (reuse_existing or key in self._built_here)
            if not fresh:
                audit = self._build(spec, key, path, requirements, used_by)
                self._built_here.add(key)
            if cleanup_on_exit and key in self._built_here:
                self._schedule_cleanup(key)
        assert audit is not None
        self._record_use(path, key, used_by)
        return NodeEnvironment(
            spec=spec,
            python_version=version,
            key=key,
            path=str(path),
            python=audit["python"],
            lock=tuple(audit["lock"]),
            lock_hash=audit["lock_hash"],
        )

    def audit(self, key: str | None = None) -> dict[str, dict[str, Any]]:
        """The audit of every complete env under the root (or only ``key``).

        Each holds the spec, the lock (``uv pip freeze`` lines) and its hash,
        the build time and the nodes/variants that used it.
        """
        audits: dict[str, dict[str, Any]] = {}
        if key:
            paths = [self.root / key]
        else:
            paths = sorted(p for p in self.root.iterdir() if p.is_dir()) if self.root.is_dir() else []
        for path in paths:
            audit = self._read_audit(path)
            if audit is None:
                continue
            uses = path / _USES
            users: list[str] = []
            if uses.exists():
                for line in uses.read_text().splitlines():
                    with contextlib.suppress(ValueError):
                        name = json.loads(line)["used_by"]
                        if name not in users:
                            users.append(name)
            audits[audit["key"]] = {**audit, "used_by": users}
        return audits

    def cleanup(self) -> list[str]:
        """Delete the envs this manager built with ``cleanup_on_exit``; runs at exit."""
        removed = []
        for key in sorted(self._cleanup):
            path = self.root / key
            with self._file_lock(key):
                shutil.rmtree(path, ignore_errors=True)
            with contextlib.suppress(OSError):
                (self.root / f".{key}.lock").unlink()
            removed.append(str(path))
        self._cleanup.clear()
        return removed

    # ─── Internals ───

    def _requirements(self, spec: EnvSpec, used_by: str) -> Path | None:
        if spec.requirements_file is None:
            return None
        path = Path(spec.requirements_file).expanduser()
        path = path if path.is_absolute() else Path.cwd() / path
        if not path.is_file():
            raise EnvironmentBuildError(
                f"EnvSpec.requirements_file={spec.requirements_file!r} (environment of {used_by or 'a node'}): "
                f"no such file ({path}; relative paths are read from {Path.cwd()}). "
                "Fix: give an existing requirements file, or list the packages in EnvSpec.dependencies",
                used_by=used_by,
            )
        return path

    def _key(self, spec: EnvSpec, requirements: Path | None) -> str:
        payload = {
            "format": _FORMAT,
            "python": _running_version(),
            "interpreter": os.path.realpath(getattr(sys, "_base_executable", sys.executable)),
            "base": _base_site_packages(),
            "dependencies": sorted({d.strip() for d in spec.dependencies}),
            "requirements": hashlib.sha256(requirements.read_bytes()).hexdigest() if requirements else None,
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    @contextlib.contextmanager
    def _file_lock(self, key: str) -> Iterator[None]:
        """Hold the env's lock file (processes sharing the root build or remove an env one at a time)."""
        from filelock import FileLock

        self.root.mkdir(parents=True, exist_ok=True)
        with FileLock(self.root / f".{key}.lock"):
            yield

    @staticmethod
    def _read_audit(path: Path) -> dict[str, Any] | None:
        try:
            audit = json.loads((path / _AUDIT).read_text())
        except (OSError, ValueError):
            return None
        if audit.get("format") != _FORMAT or not os.path.exists(audit.get("python", "")):
            return None
        return audit

    def _uv(self, args: Sequence[str], *, what: str, used_by: str, spec: EnvSpec) -> str:
        command = [self.uv, *args]
        env = {**os.environ, "UV_NO_PROGRESS": "1"}
        env.pop("VIRTUAL_ENV", None)  # --python names the target; never the caller's venv
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=self.timeout_s, env=env, check=False)
        except subprocess.TimeoutExpired as exc:
            raise EnvironmentBuildError(
                f"uv did not {what} within {self.timeout_s:.0f}s for the environment of {used_by or 'a node'} "
                f"(dependencies={spec.dependencies}). Fix: check the network to the package index",
                used_by=used_by,
            ) from exc
        if done.returncode != 0:
            output = (done.stderr or done.stdout).strip()
            output = "\n".join(line for line in output.splitlines() if not line.startswith("Using Python"))
            raise EnvironmentBuildError(
                f"cannot build the environment of {used_by or 'a node'}: uv failed to {what} "
                f"(dependencies={spec.dependencies}, requirements_file={spec.requirements_file!r}).\n"
                f"uv says:\n{output}\n"
                "Fix: correct EnvSpec.dependencies / requirements_file so that `uv pip install` succeeds",
                used_by=used_by,
                uv_output=output,
            )
        return done.stdout

    def _build(self, spec: EnvSpec, key: str, path: Path, requirements: Path | None, used_by: str) -> dict[str, Any]:
        # In place, under the env's file lock; the audit file is written last,
        # so a build that dies half-way is never taken for a complete env.
        logger.info("building uv environment %s for %s: %s", key, used_by, spec.dependencies)
        started = time.perf_counter()
        shutil.rmtree(path, ignore_errors=True)
        try:
            self._uv(
                ["venv", "--quiet", "--no-project", "--python", sys.executable, str(path)],
                what="create the virtual environment",
                used_by=used_by,
                spec=spec,
            )
            python = str(path / "bin" / "python")
            # bytecode at install: Ray workers in this env would otherwise compile on every import
            # (no .pyc is ever written under PYTHONDONTWRITEBYTECODE=1)
            install = ["pip", "install", "--compile-bytecode", "--python", python, *spec.dependencies]
            if requirements is not None:
                install += ["-r", str(requirements)]
            self._uv(install, what="install the dependencies", used_by=used_by, spec=spec)
            site_dir = next(path.glob("lib/python*/site-packages"))
            lock = _installed(site_dir)
            shadows = _shadowed(lock)
            (site_dir / _BASE_PTH).write_text(
                "".join(f"import site; site.addsitedir({p!r})\n" for p in _base_site_packages())
            )
            if shadows:
                self._check_worker_imports(python, shadows, used_by)
            (path / _LOCK).write_text("\n".join(lock) + "\n")
            audit = {
                "format": _FORMAT,
                "key": key,
                "path": str(path),
                "python": python,
                "python_version": _running_version(),
                "spec": spec.model_dump(exclude={"env_vars"}),  # env_vars do not shape the env
                "requirements_sha256": (
                    hashlib.sha256(requirements.read_bytes()).hexdigest() if requirements else None
                ),
                "lock": lock,
                "lock_hash": hashlib.sha256("\n".join(lock).encode()).hexdigest(),
                "shadows": shadows,
                "base_site_packages": _base_site_packages(),
                "uv_version": _uv_version(self.uv),
                "build_seconds": round(time.perf_counter() - started, 3),
                "built_at": datetime.now(UTC).isoformat(),
            }
            tmp = path / f".{_AUDIT}.tmp"
            tmp.write_text(json.dumps(audit, indent=2))
            os.replace(tmp, path / _AUDIT)
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)
            raise
        self.build_count += 1
        logger.info("built uv environment %s in %.2fs (%d packages)", key, audit["build_seconds"], len(lock))
        return audit

    def _check_worker_imports(self, python: str, shadows: dict[str, list[str]], used_by: str) -> None:
        # The env replaces packages the driver has; make sure a Ray worker
        # still starts in it, or Ray would retry starting that worker forever.
        try:
            done = subprocess.run(
                [python, "-c", _CHECK_IMPORTS], capture_output=True, text=True, timeout=300, check=False
            )
        except subprocess.TimeoutExpired:
            done = None
        if done is None or done.returncode != 0:
            replaced = ", ".join(f"{name} {env}/{base} in the driver" for name, (env, base) in shadows.items())
            raise EnvironmentBuildError(
                f"the environment of {used_by or 'a node'} replaces packages the Ray worker needs ({replaced}) "
                f"and a worker cannot start in it: `{_CHECK_IMPORTS}` fails:\n"
                f"{(done.stderr.strip()[-2000:] if done else 'timed out')}\n"
                "Fix: loosen the pins in EnvSpec.dependencies so they agree with the driver's versions",
                used_by=used_by,
            )

    def _record_use(self, path: Path, key: str, used_by: str) -> None:
        if not used_by or (key, used_by) in self._uses:
            return
        self._uses.add((key, used_by))
        line = json.dumps({"used_by": used_by, "at": datetime.now(UTC).isoformat(), "pid": os.getpid()})
        with open(path / _USES, "a") as handle:  # one short append: atomic across processes
            handle.write(line + "\n")

    def _schedule_cleanup(self, key: str) -> None:
        self._cleanup.add(key)
        if not self._atexit:
            atexit.register(self.cleanup)
            self._atexit = True


def _shadowed(lock: list[str]) -> dict[str, list[str]]:
    """Packages the env installs in another version than the driver's: {name: [env, driver]}."""
    base = _base_versions()
    shadows: dict[str, list[str]] = {}
    for line in lock:
        name, sep, version = line.partition("==")
        if sep and _normalize(name) in base and base[_normalize(name)] != version:
            shadows[name] = [version, base[_normalize(name)]]
    return shadows


def _installed(site_dir: Path) -> list[str]:
    """What the env installed, as ``uv pip freeze`` lines (read from the ``*.dist-info`` folders).

    Read directly rather than by running ``uv pip freeze``: same content, and
    it saves a subprocess on every build.
    """
    lines = []
    for entry in sorted(os.listdir(site_dir)):
        if not entry.endswith(".dist-info"):
            continue
        name, _, version = entry[: -len(".dist-info")].rpartition("-")
        line = f"{_normalize(name)}=={version}"
        direct = site_dir / entry / "direct_url.json"
        if direct.exists():  # a URL, VCS or local-path install: pin the source, as pip freeze does
            with contextlib.suppress(ValueError, KeyError):
                line = f"{_normalize(name)} @ {json.loads(direct.read_text())['url']}"
        lines.append(line)
    return lines


def _base_versions() -> dict[str, str]:
    """{normalized name: version} of the driver's packages, from the ``*.dist-info`` folder names."""
    versions: dict[str, str] = {}
    for folder in _base_site_packages():
        for entry in os.listdir(folder):
            if entry.endswith(".dist-info"):
                name, _, version = entry[: -len(".dist-info")].rpartition("-")
                versions.setdefault(_normalize(name), version)
    return versions


def _normalize(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


_uv_versions: dict[str, str] = {}


def _uv_version(uv: str) -> str:
    if uv not in _uv_versions:
        done = subprocess.run([uv, "--version"], capture_output=True, text=True, check=False)
        _uv_versions[uv] = done.stdout.strip()
    return _uv_versions[uv]


def _installed_pythons(uv: str) -> list[tuple[str, str]]:
    """(version, path) of every interpreter uv finds on this machine (no downloads)."""
    try:
        done = subprocess.run(
            [uv, "python", "list", "--only-installed", "--output-format", "json", "--no-python-downloads"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        found = json.loads(done.stdout or "[]")
    except (subprocess.TimeoutExpired, ValueError):
        return []
    pythons: list[tuple[str, str]] = []
    for item in found:
        version, path = str(item.get("version")), str(item.get("path"))
        if item.get("path") and version not in {v for v, _ in pythons}:
            pythons.append((version, path))
    return pythons


def check_python_version(spec: EnvSpec, *, uv: str | None = None, used_by: str = "") -> str:
    """The Python version the env of ``spec`` gets: the running one, when the spec allows it.

    Ray runs every worker of a cluster on the cluster's Python (this driver's,
    as Ray checks on connect), so an env can only be built on that version.

    Raises:
        PythonVersionError: names the cluster's Python and the interpreters uv finds.
    """
    running = _running_version()
    wanted = spec.python_version
    if wanted is None or running.split(".")[: len(wanted.split("."))] == wanted.split("."):
        return running
    pythons = _installed_pythons(uv or _uv_bin())
    have = [v for v, _ in pythons if v.split(".")[: len(wanted.split("."))] == wanted.split(".")]
    listed = ", ".join(f"{v} ({p})" for v, p in pythons) or "none"
    why = f"Python {have[0]} is installed but" if have else f"uv finds no installed Python {wanted}, and in any case"
    raise PythonVersionError(
        f"EnvSpec.python_version={wanted!r} (environment of {used_by or 'a node'}) cannot be provided: {why} "
        f"Ray runs every worker on the cluster's Python, {running} (the Python running wtb_prefect). "
        f"Interpreters uv finds: {listed}. Fix: python_version=None (the running {running}) or "
        f"'{'.'.join(running.split('.')[:2])}', or run wtb_prefect and its Ray cluster under Python {wanted}",
        used_by=used_by,
    )


_managers: dict[Path, EnvironmentManager] = {}
_managers_lock = threading.Lock()


def get_environment_manager(root: Path | str | None = None) -> EnvironmentManager:
    """The process-wide manager of ``root`` (default :func:`default_env_root`)."""
    path = Path(root).expanduser().resolve() if root is not None else default_env_root()
    with _managers_lock:
        manager = _managers.get(path)
        if manager is None:
            manager = _managers[path] = EnvironmentManager(path)
        return manager


def prepare_node_environment(
    config: EnvironmentConfig, spec: EnvSpec | None, *, used_by: str, mode: str
) -> NodeEnvironment | None:
    """Build (or reuse) the env a node resolved to, before any work starts.

    Raises:
        ConfigError: the env cannot be applied (nodes run in the flow process
            with ``batch_executor`` other than "ray"; a remote ``uv_manager_url``).
        PythonVersionError, EnvironmentBuildError: see :meth:`EnvironmentManager.ensure`.
    """
    if spec is None:
        return None
    needs_isolation = bool(spec.dependencies or spec.requirements_file or spec.env_vars)
    if needs_isolation and mode != "ray":
        raise ConfigError(
            "ExecutionConfig.batch_executor",
            f"is {mode!r}, so node bodies run in the flow process, where the environment of {used_by} "
            "(its dependencies / env_vars) cannot be applied",
            "use batch_executor='ray', or EnvironmentConfig(use_current_env=True) to run in the current environment",
        )
    if config.uv_manager_url is not None:
        raise ConfigError(
            "EnvironmentConfig.uv_manager_url",
            f"is {config.uv_manager_url!r}, but only the embedded uv manager is supported",
            "leave uv_manager_url=None; set WTB_ENV_DIR to share built environments between projects",
        )
    return get_environment_manager().ensure(
        spec, used_by=used_by, reuse_existing=config.reuse_existing, cleanup_on_exit=config.cleanup_on_exit
    )


@functools.lru_cache(maxsize=256)
def _lock_of(python: str) -> tuple[str, ...]:
    """The exact pins of the env whose interpreter is ``python`` (its ``lock.txt``, on the driver)."""
    lock = Path(python).parent.parent / _LOCK
    return tuple(line for line in lock.read_text().splitlines() if line.strip())


def placed_options(options: dict[str, Any]) -> dict[str, Any]:
    """A node call's Ray options as the joined cluster can apply them.

    Unchanged when every node sees the driver's files. Otherwise an env given
    as ``py_executable`` (a path on the driver) becomes Ray's ``uv`` runtime
    env with the env's locked pins, which Ray installs on the node that runs
    the call.
    """
    from wtb_prefect.services.ray_cluster import files_shared

    runtime_env = options.get("runtime_env")
    if not runtime_env or "py_executable" not in runtime_env or files_shared():
        return options
    placed = {k: v for k, v in runtime_env.items() if k != "py_executable"}
    placed["uv"] = {"packages": list(_lock_of(runtime_env["py_executable"]))}
    return {**options, "runtime_env": placed}


def environment_setup_error(exc: BaseException, node: str, options: dict[str, Any]) -> EnvironmentBuildError:
    """Ray's failure to set up a node call's runtime env, as :class:`EnvironmentBuildError`.

    Ray keeps the failure of one env on a node and fails the next call with
    it at once, so the retries of the node end in seconds, not a hang.
    """
    runtime_env = options.get("runtime_env") or {}
    packages = (runtime_env.get("uv") or {}).get("packages") or runtime_env.get("pip") or []
    what = f"its packages {', '.join(map(str, packages))}" if packages else f"its runtime env {runtime_env}"
    detail = str(exc).strip()
    return EnvironmentBuildError(
        f"the environment of {node} could not be set up on the Ray node that was to run it ({what}):\n"
        f"{detail[-2000:]}\n"
        "Fix: make the node able to install it (network access to the package index, the same Python and "
        "platform as the driver, build tools for packages without wheels), or change EnvSpec.dependencies",
        used_by=node,
        uv_output=detail,
    )
