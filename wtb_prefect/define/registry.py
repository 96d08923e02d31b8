"""Finding a project (and its batch data) by name or reference.

Flows run by Prefect deployments and the ``wtb`` CLI name projects by:

- the name of a project published in this process;
- ``"package.module:attribute"``: a ``WorkflowProject`` or a function returning one
  (Appendix A.1's module-path submission);
- a path to a project YAML file (``*.yaml`` / ``*.yml``, Appendix A.2);
- ``"wtb-project/<name>"``: a saved :class:`~wtb_prefect.integrations.blocks.WTBProject` block.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import sys
import threading
from pathlib import Path
from collections.abc import Callable
from typing import Any

import yaml

from wtb_prefect.define.project import WorkflowProject
from wtb_prefect.errors import ConfigError, UnknownProjectError, WTBError
from wtb_prefect.plugins import load_plugins

__all__ = [
    "import_reference",
    "is_yaml_path",
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


def import_reference(reference: str, what: str) -> Any:
    # Like uvicorn's --app-dir default: the working directory is importable.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module_name, _, attribute = reference.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise UnknownProjectError(
            f"{what} {reference!r}: cannot import it ({exc}). "
            "Fix: check the module is on PYTHONPATH (or under the working directory) and the attribute name"
        ) from exc
    return target


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
    resolver = _resolver_for(reference)
    if resolver is not None:
        return resolver(reference)
    if is_yaml_path(reference):
        path = Path(reference).expanduser()
        if not path.is_file():
            raise UnknownProjectError(
                f"project file {reference!r} does not exist (working directory {os.getcwd()}). "
                "Fix: give the path of an existing project YAML file"
            )
        project = WorkflowProject.from_yaml(path)
        publish_project(project)
        return project
    if _MODULE_REF.match(reference):
        target = import_reference(reference, "project reference")
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
        return project
    raise UnknownProjectError(
        f"no project {reference!r}: it is not registered in this process, not a "
        "'package.module:attribute' reference, not a YAML file path and not a "
        f"reference a plugin resolves ({sorted(_resolvers)}). Registered: {sorted(_projects)}"
    )


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
            return import_reference(text, what)
        except UnknownProjectError as exc:
            raise ConfigError(what, str(exc), "name an importable list") from exc
    raise ConfigError(
        what,
        f"{text!r} is neither inline JSON, an existing file (working directory {os.getcwd()}) "
        "nor a 'package.module:attribute' reference",
        "give the data inline, a JSON/YAML file path, or an importable attribute",
    )
