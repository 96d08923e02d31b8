"""Automatic lanes: whether a node nobody marked waits or computes, found from its first calls.

The commonest LangGraph node is a plain ``def`` that calls a chat model's
sync client and waits. Unless the node says how it runs (``io_bound=True`` or
``False``, ``async def``, or a CPU, GPU, memory or custom-resource request
written in its resources), its first :data:`PROBE_CALLS` calls run as Ray
tasks, each in a worker process of its own, where the worker measures the
CPU time its process spent against the call's wall time. The rule:

    the node **waits** when its CPU time summed over its first 3 calls is
    under a tenth (:data:`WAIT_SHARE`) of their wall time summed;

it then moves to a threaded I/O lane (actors reserving :data:`IO_ACTOR_CPUS`
CPU each, many calls per actor) for the rest of the batch; otherwise it
computes and stays one Ray task per call. Summing over three calls keeps one
call that hit a warm cache (all CPU, no wait) or a slow network from deciding
alone; a tenth leaves room for a client's JSON and TLS work around a long wait,
and a body whose threads compute (numpy, a tokenizer) counts their CPU too, as
the measure is the process's.

While the first calls run, later calls of the node wait for the verdict (at
most :data:`HOLD_S` seconds after the first call started): they would
otherwise queue as Ray tasks holding a CPU each, which is what the I/O lane is
there to avoid. The probe calls themselves reserve at most
:data:`IO_ACTOR_CPUS` CPU each, so that the three run at once. The verdict
holds for the rest of the batch and for the driver's later batches of the
same node implementation (its code unchanged), and is kept in the state folder
(:data:`VERDICTS_FILE`) for later drivers: a CLI run or a deployment's flow run
starts a new driver each time, and should not pay for the probe again. A
verdict found earlier says so in its reason ("measured earlier"); to make a
node probe again, change its code, mark it, or delete that file. Values are
never affected: the lane decides where the body runs, not what it gets or
returns.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from wtb_prefect.config import NodeResourceConfig

__all__ = [
    "EXPLICIT_REQUEST",
    "HOLD_S",
    "IO_ACTOR_CPUS",
    "PROBE_CALLS",
    "VERDICTS_FILE",
    "WAIT_SHARE",
    "AutoLane",
    "body_key",
    "fixed_lane",
]

PROBE_CALLS = 3
"""Calls measured before a node's lane is chosen."""

WAIT_SHARE = 0.1
"""A node waits when its CPU time is under this share of its wall time over its first calls."""

HOLD_S = 10.0
"""The longest later calls wait for the verdict after the node's first call started; then they run as Ray tasks."""

IO_ACTOR_CPUS = 0.1
"""CPUs an I/O-lane actor of a node found to wait reserves (its calls share them)."""

EXPLICIT_REQUEST = ("num_cpus", "num_gpus", "memory", "custom_resources")
"""Resource fields that, when written, keep a node on the lane its resources say (a Ray task per call)."""

VERDICTS_FILE = "lane_verdicts.json"
"""The file of the state folder that keeps the verdicts for later drivers."""

Kind = Literal["actor", "task"]

_log = logging.getLogger(__name__)


def fixed_lane(resources: NodeResourceConfig, is_async: bool) -> tuple[Kind | None, str]:
    """The lane a node's definition fixes, with the reason; ``(None, "")`` when the bench should find out."""
    if is_async:
        return "actor", "async def"
    if resources.io_bound is True:
        return "actor", "io_bound=True"
    if resources.io_bound is False:
        return "task", "io_bound=False"
    written = [name for name in EXPLICIT_REQUEST if name in resources.model_fields_set]
    if written:
        return "task", f"explicit request ({', '.join(written)})"
    return None, ""


_verdicts: dict[str, tuple[Kind, str]] = {}
_verdicts_lock = threading.Lock()
_loaded_from: Path | None = None


def _verdicts_path() -> Path:
    from wtb_prefect.settings import get_settings

    return get_settings().state_dir / VERDICTS_FILE


def _read(path: Path) -> dict[str, tuple[Kind, str]]:
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        _log.debug("lane verdicts at %s unreadable; nodes probe again", path, exc_info=True)
        return {}
    return {
        key: (value[0], value[1])
        for key, value in raw.items()
        if isinstance(value, list) and len(value) == 2 and value[0] in ("actor", "task")
    }


def _known(key: str) -> tuple[Kind, str] | None:
    """The verdict on ``key`` from this driver, or from an earlier one (the state folder's file)."""
    global _loaded_from
    with _verdicts_lock:
        path = _verdicts_path()
        if _loaded_from != path:  # the first look of this driver (or a new state folder)
            _verdicts.update({k: v for k, v in _read(path).items() if k not in _verdicts})
            _loaded_from = path
        return _verdicts.get(key)


def _keep(key: str, verdict: tuple[Kind, str]) -> None:
    """Record a new verdict here and in the state folder (other drivers may write beside this one)."""
    with _verdicts_lock:
        _verdicts[key] = verdict
        path = _verdicts_path()
        try:
            merged = {**_read(path), key: verdict}
            with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=".verdicts-", delete=False) as out:
                json.dump({k: list(v) for k, v in merged.items()}, out)
            os.replace(out.name, path)
        except OSError:  # a read-only state folder: later drivers probe again, nothing else changes
            _log.debug("could not keep the lane verdict of %s in %s", key, path, exc_info=True)
            with contextlib.suppress(NameError, OSError):
                os.unlink(out.name)


def body_key(where: str, func: Callable[..., Any]) -> str:
    """What a verdict is kept under: the node (of its project and variant) and its implementation's code."""
    code = getattr(getattr(func, "__wrapped__", func), "__code__", None)
    digest = hashlib.sha256(code.co_code + repr(code.co_consts).encode()).hexdigest()[:16] if code else "?"
    name = getattr(func, "__qualname__", type(func).__qualname__)
    return f"{where}|{getattr(func, '__module__', '?')}.{name}|{digest}"


class AutoLane:
    """The verdict on one node (of one variant): probe calls first, then the lane for the rest of the batch."""

    def __init__(self, key: str | None = None) -> None:
        self.key = key
        self._cond = threading.Condition()
        self._probing = 0
        self._measured = 0
        self._cpu = 0.0
        self._wall = 0.0
        self._first: float | None = None
        self.verdict: Kind | None = None
        self.reason = ""
        self.concurrency = 1
        """The batch's concurrency, which sizes the I/O lane's pool when the node moves there."""
        self._listeners: list[Callable[[Kind], None]] = []
        known = _known(key) if key is not None else None
        if known is not None:  # found out by an earlier batch of this driver, or by an earlier driver
            self.verdict, self.reason = known[0], known[1].replace("measured:", "measured earlier:", 1)

    def __deepcopy__(self, memo: dict) -> AutoLane:  # one verdict per node plan, however its options are copied
        return self

    def when_decided(self, listener: Callable[[Kind], None]) -> None:
        """Call ``listener(verdict)`` once the verdict is reached (at once when it is known)."""
        with self._cond:
            verdict = self.verdict
            if verdict is None:
                self._listeners.append(listener)
                return
        listener(verdict)

    def choose(self, deadline: float) -> tuple[Kind, str, bool]:
        """The lane of the next call: ``(kind, reason, is_probe)``; a probe must report :meth:`measured` or :meth:`lost`."""
        with self._cond:
            while self.verdict is None:
                if self._probing + self._measured < PROBE_CALLS:
                    self._probing += 1
                    if self._first is None:
                        self._first = time.monotonic()
                    return "task", f"finding out: one of its first {PROBE_CALLS} calls, measured", True
                until = min(deadline, (self._first or time.monotonic()) + HOLD_S)
                remaining = until - time.monotonic()
                if remaining <= 0:
                    return (
                        "task",
                        f"finding out: its first calls ran past {HOLD_S:g} s, so this one ran as a task",
                        False,
                    )
                self._cond.wait(remaining)
            return self.verdict, self.reason, False

    def measured(self, cpu_s: float, wall_s: float) -> None:
        """A probe call ended: its process spent ``cpu_s`` of CPU over ``wall_s`` seconds."""
        decided: Kind | None = None
        with self._cond:
            self._probing -= 1
            self._measured += 1
            self._cpu += max(0.0, cpu_s)
            self._wall += max(0.0, wall_s)
            if self.verdict is None and self._measured >= PROBE_CALLS:
                share = self._cpu / self._wall if self._wall > 0 else 1.0
                what = f"CPU {self._cpu:.3f} s over {self._wall:.3f} s wall in its first {self._measured} calls"
                if share < WAIT_SHARE:
                    self.verdict, self.reason = "actor", f"measured: waits ({what})"
                else:
                    self.verdict, self.reason = "task", f"measured: computes ({what})"
                decided = self.verdict
            listeners, self._listeners = (self._listeners, []) if decided else ([], self._listeners)
            self._cond.notify_all()
        if decided is not None:
            if self.key is not None:
                _keep(self.key, (decided, self.reason))
            for listener in listeners:
                listener(decided)

    def lost(self) -> None:
        """A probe call ended without a measure (its worker died): another call probes instead."""
        with self._cond:
            self._probing -= 1
            self._cond.notify_all()
