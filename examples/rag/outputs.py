"""Where the nodes of the example write their output files."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

__all__ = ["OUTPUTS_FOLDER", "outputs_dir", "write_output"]

OUTPUTS_FOLDER = "outputs"
"""The tracked folder, relative to the project root (see ``project.build_project``)."""


def workspace_root() -> Path:
    """The folder holding this execution's ``outputs/``.

    With file tracking on, it is the execution's own workspace
    (``wtb_prefect.workspace()``), which WTB snapshots and can roll back.
    Otherwise ``$WTB_HOME/projects/rag_qa/workspace``: Ray workers get
    ``WTB_HOME`` from the driver, and the source tree stays clean.
    """
    try:
        from wtb_prefect.worker.workspace import current_workspace
    except ImportError:  # a node environment without wtb_prefect
        current = None
    else:
        current = current_workspace()
    if current is not None:
        return current
    home = Path(os.environ.get("WTB_HOME", ".wtb")).expanduser().resolve()
    return home / "projects" / "rag_qa" / "workspace"


def outputs_dir() -> Path:
    """The folder output files go to (created on first use)."""
    path = workspace_root() / OUTPUTS_FOLDER
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_output(name: str, record: dict[str, Any]) -> Path:
    """Write ``record`` as ``<outputs>/<name>.json`` atomically; return the path."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:150] or "output"
    path = outputs_dir() / f"{safe}.json"
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, indent=1, sort_keys=True))
    tmp.replace(path)
    return path
