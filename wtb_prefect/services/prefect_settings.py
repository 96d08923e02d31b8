"""Prefect settings overrides that are built once, not at every use.

``prefect.settings.temporary_settings`` validates a whole new ``Settings``
object (every field, every environment source) each time it is entered,
which costs noticeable CPU. wtb_prefect enters a few overrides
many times per batch (the client-retry cap of every best-effort API call,
e.g. each progress-artifact update), so :func:`settings_override` keeps the
object it built for the same base settings, the same updates and the same
``PREFECT_*`` environment, and enters it with Prefect's own
``SettingsContext``, as ``temporary_settings`` does.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["settings_override"]

_lock = threading.Lock()
_built: dict[tuple[int, tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]], tuple[Any, Any]] = {}
_MAX_ENTRIES = 64


def _key(setting: Any) -> str:
    return str(getattr(setting, "name", setting))


def _environment() -> tuple[tuple[str, str], ...]:
    """The ``PREFECT_*`` variables: a new ``Settings`` reads them for fields the base left unset."""
    return tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("PREFECT_")))


@contextlib.contextmanager
def settings_override(updates: Mapping[Any, Any]) -> Iterator[Any]:
    """``temporary_settings(updates=updates)``, with the new settings object reused when nothing changed."""
    from prefect.context import SettingsContext, get_settings_context

    context = get_settings_context()
    base = context.settings
    key = (id(base), tuple(sorted((_key(k), repr(v)) for k, v in updates.items())), _environment())
    with _lock:
        cached = _built.get(key)
    if cached is not None and cached[0] is base:
        settings = cached[1]
    else:
        settings = base.copy_with_update(updates=updates)
        with _lock:
            if len(_built) >= _MAX_ENTRIES:
                _built.clear()
            _built[key] = (base, settings)  # the base is kept alive, so its id is not reused
    with SettingsContext(profile=context.profile, settings=settings):
        yield settings
