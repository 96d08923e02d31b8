"""Finding a project by name or reference, for flows run by Prefect deployments."""

from __future__ import annotations

import importlib
import threading

from .errors import UnknownProjectError
from .project import WorkflowProject

__all__ = ["publish_project", "resolve_project"]

_projects: dict[str, WorkflowProject] = {}
_lock = threading.Lock()


def publish_project(project: WorkflowProject) -> None:
    """Make ``project`` findable by name in this process (flows look it up here)."""
    with _lock:
        _projects[project.name] = project


def resolve_project(reference: str | WorkflowProject) -> WorkflowProject:
    """The project a flow parameter names.

    ``reference`` is one of: a project published in this process (by
    ``WTBTestBench.register_project``); ``"package.module:attribute"`` naming a
    ``WorkflowProject`` or a function returning one.

    Raises:
        UnknownProjectError: nothing matches, with what was tried.
    """
    if isinstance(reference, WorkflowProject):
        return reference
    with _lock:
        if reference in _projects:
            return _projects[reference]
    if ":" in reference:
        module_name, _, attribute = reference.partition(":")
        try:
            target = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as exc:
            raise UnknownProjectError(
                f"project reference {reference!r}: cannot import it ({exc}). "
                "Fix: check the module is on PYTHONPATH and the attribute name"
            ) from exc
        project = target() if callable(target) and not isinstance(target, WorkflowProject) else target
        if not isinstance(project, WorkflowProject):
            raise UnknownProjectError(
                f"project reference {reference!r} gives {type(project).__name__}, not a WorkflowProject"
            )
        publish_project(project)
        return project
    raise UnknownProjectError(
        f"no project {reference!r}: it is not registered in this process, not a "
        "'package.module:attribute' reference. Registered: "
        f"{sorted(_projects)}"
    )
