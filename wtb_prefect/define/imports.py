"""Importing what a reference names (``package.module:attribute``), and making folders importable.

The one place wtb_prefect turns a reference into an object: project references
(:mod:`wtb_prefect.define.registry`), the parts a project YAML file names
(:mod:`wtb_prefect.define.yaml_io`) and the CLI's examples all come here.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any, Literal

__all__ = ["ReferenceImportError", "import_attribute", "import_reference", "on_sys_path"]


class ReferenceImportError(ImportError):
    """A reference that does not import; ``part`` says whether the module or the attribute failed."""

    def __init__(self, module: str, attribute: str, part: Literal["module", "attribute"], cause: BaseException):
        self.module, self.attribute, self.part, self.cause = module, attribute, part, cause
        what = f"module {module!r}" if part == "module" else f"attribute {attribute!r} of module {module!r}"
        super().__init__(f"cannot import {what}: {cause}")


def on_sys_path(folder: str | Path | None = None) -> None:
    """Make modules under ``folder`` (default: the working directory) importable, like uvicorn's --app-dir."""
    text = str(folder if folder is not None else os.getcwd())
    if text not in sys.path:
        sys.path.insert(0, text)


def import_attribute(module: str, attribute: str) -> Any:
    """``module``'s (dotted) ``attribute``.

    Raises:
        ReferenceImportError: the module does not import (``part="module"``, also when
            importing it raised) or has no such attribute (``part="attribute"``).
    """
    try:
        target: Any = importlib.import_module(module)
    except Exception as exc:
        raise ReferenceImportError(module, attribute, "module", exc) from exc
    for name in attribute.split("."):
        try:
            target = getattr(target, name)
        except AttributeError as exc:
            raise ReferenceImportError(module, attribute, "attribute", exc) from None
    return target


def import_reference(reference: str) -> Any:
    """The object ``"package.module:attribute"`` (or ``"package.module.attribute"``) names,
    with the working directory importable.

    Raises:
        ReferenceImportError: see :func:`import_attribute`; also for a reference without a module.
    """
    on_sys_path()
    module, sep, attribute = reference.partition(":")
    if not sep:
        module, _, attribute = reference.rpartition(".")
    if not module or not attribute:
        raise ReferenceImportError(module, attribute, "module", ValueError(f"{reference!r} names no module"))
    return import_attribute(module, attribute)
