"""The one project registry: finding a project (and its batch data) by name or reference.

``WTBTestBench.register_project``, flows run by Prefect deployments and the
``wtb`` CLI all find projects here, by:

- the name of a project published in this process (``register_project`` publishes);
- ``"package.module:attribute"``: a ``WorkflowProject`` or a function returning one
  (a module-path submission);
- a path to a project YAML file (``*.yaml`` / ``*.yml``);
- a prefix a plugin resolves, e.g. ``"wtb-project/<name>"``: a saved Prefect block
  (:mod:`wtb_prefect.integrations.blocks`);
- the name of a project resolved by reference from the same state folder before,
  in any process (remembered in ``$WTB_HOME/projects.json``).
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from wtb_prefect.define.imports import ReferenceImportError, import_reference, on_sys_path
from wtb_prefect.define.project import WorkflowProject
from wtb_prefect.errors import ConfigError, UnknownProjectError, WTBError
from wtb_prefect.plugins import load_plugins
from wtb_prefect.settings import get_settings

__all__ = [
    "is_yaml_path",
    "known_projects",
    "load_data",
    "publish_project",
    "published_projects",
    "register_reference_resolver",
    "resolve_project",
]

_projects: dict[str, WorkflowProject] = {}
_resolvers: dict[str, Callable[[str], WorkflowProject]] = {}
_lock = threading.Lock()
_MODULE_REF = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def register_reference_resolver(prefix: str, resolver: Callable[[str], WorkflowProject]) -> None:
    """Resolve project references that start with ``prefix`` (e.g. ``"wtb-project/"``) with ``resolver``.

    Plugins call this (see :mod:`wtb_prefect.plugins`); the Prefect block
    integration resolves ``wtb-project/<name>`` this way.
    """
    with _lock:
        _resolvers[prefix] = resolver


def _resolver_for(reference: str) -> Callable[[str], WorkflowProject] | None:
    if Path(reference).exists():
        return None
    load_plugins()
    with _lock:
        for prefix, resolver in _resolvers.items():
            if reference.startswith(prefix):
                return resolver
    return None


def publish_project(project: WorkflowProject) -> None:
    """Make ``project`` findable by name in this process (flows look it up here)."""
    with _lock:
        _projects[project.name] = project


def published_projects() -> dict[str, WorkflowProject]:
    """The projects published in this process, by name."""
    with _lock:
        return dict(_projects)


def is_yaml_path(reference: str) -> bool:
    """Whether ``reference`` names a YAML file (by its suffix)."""
    return reference.lower().endswith((".yaml", ".yml"))


def _import_reference(reference: str, what: str) -> Any:
    try:
        return import_reference(reference)
    except ReferenceImportError as exc:
        raise UnknownProjectError(
            f"{what} {reference!r}: {exc}. "
            "Fix: check the module is on PYTHONPATH (or under the working directory) and the attribute name"
        ) from exc


def resolve_project(reference: str | WorkflowProject) -> WorkflowProject:
    """The project a flow parameter or CLI argument names.

    Raises:
        UnknownProjectError: nothing matches, with what was tried.
        ProjectFileError: a YAML file that is invalid (file, key and line named).
    """
    if isinstance(reference, WorkflowProject):
        return reference
    if not isinstance(reference, str) or not reference.strip():
        raise UnknownProjectError(
            f"project reference must be a non-empty string, got {reference!r}. "
            "Fix: give 'package.module:attribute', a YAML path or a registered project name"
        )
    reference = reference.strip()
    with _lock:
        if reference in _projects:
            return _projects[reference]
    project = _resolve_reference(reference)
    if project is None:
        remembered = known_projects().get(reference)
        if remembered is not None:
            on_sys_path(remembered.get("cwd"))
            project = _resolve_reference(remembered["reference"])
    if project is None:
        raise UnknownProjectError(
            f"no project {reference!r}: it is not registered in this process, not a "
            "'package.module:attribute' reference, not a YAML file path, not a "
            f"reference a plugin resolves ({sorted(_resolvers)}) and not a project name run before "
            f"from this state folder ({sorted(known_projects())}). Registered: {sorted(_projects)}"
        )
    return project


def known_projects() -> dict[str, dict[str, Any]]:
    """The projects resolved by reference from this state folder before, by name:
    ``{"reference": ..., "cwd": ..., "used_at": ...}`` (so a name works in any later process)."""
    path = _known_file()
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return {}


def _known_file() -> Path:
    return get_settings().state_dir / "projects.json"


def _remember(project: WorkflowProject, reference: str) -> None:
    if is_yaml_path(reference):
        reference = str(Path(reference).expanduser().resolve())
    known = known_projects()
    if known.get(project.name, {}).get("reference") == reference:
        return
    known[project.name] = {"reference": reference, "cwd": os.getcwd(), "used_at": time.time()}
    path = _known_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_suffix(f".{os.getpid()}.tmp")
        temp.write_text(json.dumps(known, indent=2))
        temp.replace(path)
    except OSError:  # a read-only state folder only loses the memory of names
        pass


def _resolve_reference(reference: str) -> WorkflowProject | None:
    """The project a plugin prefix, YAML path or module reference names; None if it is none of those."""
    resolver = _resolver_for(reference)
    if resolver is not None:
        project = resolver(reference)
        _remember(project, reference)
        return project
    if is_yaml_path(reference):
        path = Path(reference).expanduser()
        if not path.is_file():
            raise UnknownProjectError(
                f"project file {reference!r} does not exist (working directory {os.getcwd()}). "
                "Fix: give the path of an existing project YAML file"
            )
        project = WorkflowProject.from_yaml(path)
        publish_project(project)
        _remember(project, reference)
        return project
    if _MODULE_REF.match(reference):
        target = _import_reference(reference, "project reference")
        try:
            project = target() if callable(target) and not isinstance(target, WorkflowProject) else target
        except WTBError:
            raise
        except Exception as exc:
            raise UnknownProjectError(
                f"project reference {reference!r}: calling it raised {type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(project, WorkflowProject):
            raise UnknownProjectError(
                f"project reference {reference!r} gives {type(project).__name__}, not a WorkflowProject. "
                "Fix: name a WorkflowProject or a function returning one"
            )
        publish_project(project)
        _remember(project, reference)
        return project
    return None


def load_data(value: Any, what: str) -> Any:
    """Batch data given inline, as a JSON/YAML file path, or as ``"package.module:attribute"``.

    Used for variant matrices, test cases and initial states passed to flows
    and to the CLI. A string that parses as a JSON list or object is taken inline.

    Raises:
        ConfigError: a file that does not exist or does not parse, a reference
            that cannot be imported.
    """
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text[:1] in "[{":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(what, f"is not valid JSON ({exc})", "give a JSON list/object or a file path") from exc
    path = Path(text).expanduser()
    if path.is_file():
        try:
            raw = path.read_text()
            return json.loads(raw) if path.suffix == ".json" else yaml.safe_load(raw)
        except (OSError, ValueError, yaml.YAMLError) as exc:
            raise ConfigError(what, f"file {text!r} cannot be read ({exc})", "give a JSON or YAML file") from exc
    if _MODULE_REF.match(text):
        try:
            return _import_reference(text, what)
        except UnknownProjectError as exc:
            raise ConfigError(what, str(exc), "name an importable list") from exc
    raise ConfigError(
        what,
        f"{text!r} is neither inline JSON, an existing file (working directory {os.getcwd()}) "
        "nor a 'package.module:attribute' reference",
        "give the data inline, a JSON/YAML file path, or an importable attribute",
    )
