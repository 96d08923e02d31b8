"""Reaching into a library's private modules, with an error that says what moved.

A few things the package needs have no public API in the library that has
them (Ray's package walker, LangGraph's runnable wrapper, the Prefect
server's SQLite transactions). Each such use sits in one small adapter module
(:mod:`wtb_prefect.services.ray_private`, :mod:`wtb_prefect.run.langgraph_private`,
:mod:`wtb_prefect.services.prefect_sqlite`) that reaches the private name through
:func:`private_name`: when a release moves it, the error names the library,
its installed version, the name and the range of versions the package was
tested with, instead of a bare ``ImportError`` deep in a run.
"""

from __future__ import annotations

import importlib
from importlib import metadata
from typing import Any

from wtb_prefect.errors import WTBError

__all__ = ["PrivateAPIChanged", "installed_version", "private_name"]


def installed_version(distribution: str) -> str:
    """The installed version of ``distribution`` ("not installed" when it is missing)."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


class PrivateAPIChanged(WTBError, ImportError):
    """A private name of a library that the package uses is gone or changed in the installed version."""

    def __init__(self, distribution: str, what: str, detail: str) -> None:
        self.distribution = distribution
        self.version = installed_version(distribution)
        self.what = what
        super().__init__(
            f"{distribution} {self.version}: {what} ({detail}). wtb_prefect uses it through an adapter tested with "
            f"the {distribution} versions its dependency range allows. Fix: install such a version (uv sync), "
            "or update the adapter for this release"
        )


def private_name(distribution: str, module: str, name: str | None = None) -> Any:
    """``module`` (or its attribute ``name``) of ``distribution``.

    Raises:
        PrivateAPIChanged: the module or the name is not there in the installed version.
    """
    try:
        found = importlib.import_module(module)
    except ImportError as exc:
        raise PrivateAPIChanged(distribution, f"module {module} is gone", str(exc)) from exc
    if name is None:
        return found
    try:
        return getattr(found, name)
    except AttributeError as exc:
        raise PrivateAPIChanged(distribution, f"{module}.{name} is gone", str(exc)) from exc
