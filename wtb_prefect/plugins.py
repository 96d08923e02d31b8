"""Plugins: modules that attach integrations when imported, found by entry point.

A plugin is any module named by an entry point of the group ``wtb_prefect.plugins``
(``[project.entry-points."wtb_prefect.plugins"]`` in a ``pyproject.toml``).
Importing it registers what it provides: batch observers
(:func:`wtb_prefect.batch.observers.register_observer_factory`), project
reference resolvers (:func:`wtb_prefect.define.registry.register_reference_resolver`).
wtb_prefect's own integrations (MLflow, tracing, Prefect artifacts, DVC file
tracking, Prefect blocks) are plugins of this package, so its core never
names them. Plugins are loaded once per process, on the first batch or
reference lookup, never by Ray workers.
"""

from __future__ import annotations

import importlib
import logging
import threading
from importlib.metadata import entry_points

__all__ = ["GROUP", "load_plugins"]

GROUP = "wtb_prefect.plugins"

logger = logging.getLogger(__name__)
_loaded = False
_lock = threading.Lock()


def load_plugins() -> None:
    """Import every installed plugin once; one that fails is logged and left out."""
    global _loaded
    with _lock:
        if _loaded:
            return
        _loaded = True
        for entry in entry_points(group=GROUP):
            try:
                importlib.import_module(entry.value.partition(":")[0])
            except Exception:
                logger.exception("plugin %s (%s) could not be loaded; batches run without it", entry.name, entry.value)
