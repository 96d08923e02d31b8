"""Limit groups: the limits of one API (a key, a model) shared by every node that names it.

``ExecutionConfig.rate_limits`` names groups (``{"openai": RateLimitConfig(...)}``)
and a node joins one with ``NodeResourceConfig.rate_limit``. A group holds
across every node and variant of a batch, and across batches running at once
on one machine: its state lives in a small JSON file under a lock file
(``fcntl.flock``), so every driver process of the machine counts the same
calls. A file rather than a Ray actor because batches on one machine may run
on different Ray clusters, a dead driver's calls are found by their process
id (an actor would hold them until they expire), and a locked read-modify-write
of a few hundred bytes costs less than an actor round trip.

**What is counted.** One node call is one request (at the provider boundary
the driver sees: the call is admitted before it is sent to its worker and
released when its result is back, so the provider sees at most as many in
flight and per window as the group admits). When the worker reports how many
chat-model calls the node made and the tokens they booked, the window counts
those instead. ``requests_per_minute`` counts every call from its admission
until ``window_s`` seconds after its end, which bounds what the provider
counts by arrival time whatever the delay between the two.

**Adaptive (AIMD).** A call that failed with the provider's rate-limit answer
(HTTP 429) reports it with the provider's ``Retry-After``: the group then

- pauses every start until that time (without the header: 1, 2, 4, ... up to
  60 seconds for consecutive rate-limit answers);
- halves its in-flight cap (never below 1) and paces its starts at 0.9 times
  the rate the provider accepted since the previous cut (accepted calls over
  the time from the end of the previous pause to the end of this one; with
  none accepted, half the pace it had), once per congestion event: calls
  already in flight when the group was cut do not cut it again;

and each call that succeeds afterwards adds ``1/cap`` to the cap and 0.5 % of
the rate set at the last cut to the pace, until the configured limits (or,
without them, no limit) are reached again. Errors that are not rate limits
change nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import re
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wtb_prefect.config import RateLimitConfig

__all__ = ["GroupLimiter", "Lease", "group_limiter", "group_of", "limits_directory"]

DIR_ENV = "WTB_RATE_LIMIT_DIR"
"""Environment variable naming the folder of the groups' state files (default: a folder per user in the temp dir)."""

POLL_S = 0.02
"""How often a call waiting for another process's call to end looks at the group's state again."""

CUT_FACTOR = 0.5
"""The in-flight cap is multiplied by this on a rate-limit answer."""

PACE_MARGIN = 0.9
"""After a rate-limit answer, starts are paced at this share of the rate the provider accepted."""

RATE_STEP = 0.005
"""Each success adds this share of the rate set at the last cut to the pace."""

MAX_BACKOFF_S = 60.0
"""The longest pause after consecutive rate-limit answers that carried no Retry-After."""


def limits_directory() -> Path:
    """The folder holding the groups' state files (``WTB_RATE_LIMIT_DIR``, else one per user in the temp dir)."""
    configured = os.environ.get(DIR_ENV)
    folder = Path(configured) if configured else Path(tempfile.gettempdir()) / f"wtb-rate-limits-{os.getuid()}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@dataclass(frozen=True)
class Lease:
    """One admitted call of a group."""

    id: str
    started: float


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def _fresh_state() -> dict[str, Any]:
    return {
        "leases": {},  # id -> [pid, started, expires]
        "window": [],  # [counted_until, requests, tokens] of ended calls
        "pause_until": 0.0,
        "cap": None,  # adaptive in-flight cap (None: the configured one)
        "rate": None,  # adaptive starts per second (None: unpaced)
        "rate_step": 0.0,
        "next_start": 0.0,
        "episode_start": None,
        "episode_accepted": 0,
        "last_cut": 0.0,
        "backoffs": 0,
        "rate_limited": 0,
    }


class GroupLimiter:
    """The shared limits of one group, enforced through its state file (thread- and process-safe)."""

    def __init__(self, name: str, config: RateLimitConfig, directory: Path | None = None) -> None:
        self.name = name
        self.config = config
        folder = directory or limits_directory()
        slug = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:40]
        digest = hashlib.sha256(name.encode()).hexdigest()[:10]
        self.path = folder / f"{slug}-{digest}.json"
        self._local = threading.Condition()  # guards this process's reads and writes of the file
        self._turn = threading.Lock()  # the one call of this process waiting for admission

    # --- the state file ------------------------------------------------------------------

    @contextlib.contextmanager
    def _state(self) -> Iterator[dict[str, Any]]:
        """The group's state, locked for this process while the block runs, written back after it."""
        with open(self.path, "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                handle.seek(0)
                text = handle.read()
                try:
                    state = {**_fresh_state(), **json.loads(text)} if text else _fresh_state()
                except json.JSONDecodeError:  # a writer died mid-write: start the group afresh
                    state = _fresh_state()
                self._tidy(state, time.time())
                yield state
                handle.seek(0)
                handle.truncate()
                handle.write(json.dumps(state))
                handle.flush()
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _tidy(self, state: dict[str, Any], now: float) -> None:
        """Forget calls of dead processes, expired leases and ended calls out of the window."""
        state["leases"] = {
            k: v for k, v in state["leases"].items() if v[2] > now and (v[0] == os.getpid() or _alive(v[0]))
        }
        state["window"] = [w for w in state["window"] if w[0] > now]

    def snapshot(self) -> dict[str, Any]:
        """A copy of the group's shared state (for reports and tests)."""
        with self._state() as state:
            return json.loads(json.dumps(state))

    # --- admission -----------------------------------------------------------------------

    def _cap(self, state: dict[str, Any]) -> float:
        configured = self.config.max_in_flight or math.inf
        return min(configured, state["cap"]) if state["cap"] is not None else configured

    def _try(self, state: dict[str, Any], now: float, hold_s: float) -> tuple[Lease | None, float, str]:
        """Admit one call now, or say how long to wait and what is short."""
        config = self.config
        if now < state["pause_until"]:
            return None, state["pause_until"] - now, "backing off after the provider's rate-limit answer"
        in_flight = len(state["leases"])
        if in_flight >= self._cap(state):
            return None, POLL_S, f"max_in_flight ({in_flight} calls running)"
        if config.requests_per_minute is not None:
            counted = in_flight + sum(w[1] for w in state["window"])
            if counted >= config.requests_per_minute:
                ages = [w[0] - now for w in state["window"]]
                return None, max(POLL_S, min(ages)) if ages else POLL_S, "requests_per_minute"
        if config.tokens_per_minute is not None:
            tokens = sum(w[2] for w in state["window"])
            if tokens >= config.tokens_per_minute:
                ages = [w[0] - now for w in state["window"] if w[2]]
                return None, max(POLL_S, min(ages)) if ages else POLL_S, "tokens_per_minute"
        if state["rate"] and now < state["next_start"]:
            return None, state["next_start"] - now, "its pace after the provider's rate-limit answers"
        if state["rate"]:
            state["next_start"] = max(now, state["next_start"]) + 1.0 / state["rate"]
        lease = Lease(uuid.uuid4().hex, now)
        state["leases"][lease.id] = [os.getpid(), now, now + hold_s]
        if state["episode_start"] is None:
            state["episode_start"] = now
        return lease, 0.0, ""

    def acquire(self, deadline: float, hold_s: float = 86400.0) -> Lease | str:
        """Wait for a turn until ``deadline`` (monotonic): the call's lease, or what was short when time ran out.

        ``hold_s`` bounds how long the lease counts if it is never released
        (its process is alive but lost it): the call's own time limit.
        """
        with self._turn:  # the others of this process queue here rather than all polling the file
            while True:
                with self._local:
                    with self._state() as state:
                        lease, wait, short = self._try(state, time.time(), hold_s)
                    if lease is not None:
                        return lease
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return f"its rate-limit group {self.name!r}: {short}"
                    self._local.wait(min(wait, remaining, 1.0))  # a release of this process wakes it at once

    def release(
        self,
        lease: Lease,
        *,
        requests: int = 1,
        tokens: int = 0,
        rate_limited: bool = False,
        retry_after: float | None = None,
    ) -> None:
        """End a call: it succeeded or failed (``requests``/``tokens`` it used), or the provider refused it."""
        now = time.time()
        with self._local:
            with self._state() as state:
                running = len(state["leases"])
                state["leases"].pop(lease.id, None)
                if rate_limited:
                    self._slow_down(state, lease, now, running, retry_after)
                else:
                    counted_until = max(now, lease.started) + self.config.window_s
                    state["window"].append([counted_until, max(1, requests), max(0, tokens)])
                    self._speed_up(state, max(1, requests))
            self._local.notify_all()

    # --- adapting --------------------------------------------------------------------------

    def _slow_down(
        self, state: dict[str, Any], lease: Lease, now: float, running: int, retry_after: float | None
    ) -> None:
        state["rate_limited"] += 1
        if retry_after is None:
            retry_after = min(MAX_BACKOFF_S, 2.0 ** state["backoffs"])
            state["backoffs"] += 1
        state["pause_until"] = max(state["pause_until"], now + retry_after)
        state["next_start"] = max(state["next_start"], state["pause_until"])
        if lease.started < state["last_cut"]:
            return  # in flight when the group was cut: the same congestion event
        cap = min(self._cap(state), float(running))
        state["cap"] = max(1.0, cap * CUT_FACTOR)
        episode = state["pause_until"] - (state["episode_start"] or now)
        accepted = state["episode_accepted"]
        if accepted > 0 and episode > 0:
            rate = PACE_MARGIN * accepted / episode
            state["rate"] = min(state["rate"], rate) if state["rate"] else rate
        elif state["rate"]:  # nothing accepted since the last cut: halve the pace
            state["rate"] *= CUT_FACTOR
        state["rate_step"] = (state["rate"] or 0.0) * RATE_STEP
        state["last_cut"] = now
        state["episode_start"] = state["pause_until"]
        state["episode_accepted"] = 0

    def _speed_up(self, state: dict[str, Any], requests: int) -> None:
        state["backoffs"] = 0
        state["episode_accepted"] += requests
        if state["cap"] is not None:
            state["cap"] += 1.0 / state["cap"]
            if self.config.max_in_flight is not None and state["cap"] >= self.config.max_in_flight:
                state["cap"] = None
        if state["rate"]:
            state["rate"] += state["rate_step"]
            ceiling = (self.config.requests_per_minute or math.inf) / self.config.window_s
            if state["rate"] >= ceiling:
                state["rate"] = None  # the configured window alone limits again


_limiters: dict[tuple[str, str], GroupLimiter] = {}
_limiters_lock = threading.Lock()


def group_limiter(name: str, config: RateLimitConfig) -> GroupLimiter:
    """The limiter of group ``name`` with ``config`` in this process (one per name and configuration)."""
    key = (name, config.model_dump_json())
    with _limiters_lock:
        limiter = _limiters.get(key)
        if limiter is None or limiter.path.parent != limits_directory():
            limiter = _limiters[key] = GroupLimiter(name, config)
        return limiter


def group_of(rate_limits: dict[str, RateLimitConfig], group: str | None, where: str) -> RateLimitConfig | None:
    """The configuration of the limit group a node names (None when it names none).

    Raises:
        ConfigError: the group is not defined in ``ExecutionConfig.rate_limits``; names the field and the fix.
    """
    from wtb_prefect.errors import ConfigError

    if group is None:
        return None
    config = rate_limits.get(group)
    if config is None:
        known = ", ".join(repr(name) for name in sorted(rate_limits)) or "none"
        raise ConfigError(
            f"{where}.rate_limit",
            f"names the limit group {group!r}, which ExecutionConfig.rate_limits does not define (defined: {known})",
            f"add it, e.g. ExecutionConfig(rate_limits={{{group!r}: {{'max_in_flight': 8, 'requests_per_minute': 500}}}}), "
            "or name a defined group",
        )
    return config
