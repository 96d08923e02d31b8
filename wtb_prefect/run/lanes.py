"""Where a node call runs on Ray: an I/O lane (a pool of actors) or a Ray task.

A node that waits rather than computes (an LLM call) should not hold a whole
worker process while it waits. So node calls take one of two lanes:

- **I/O lane**: ``async def`` nodes, and sync nodes whose resources say
  ``io_bound=True``, run in long-lived async Ray actors
  (:class:`wtb_prefect.worker.call.NodeLane`), up to
  ``NodeResourceConfig.calls_per_worker`` calls at once per actor: coroutines
  on the actor's event loop, sync bodies on its threads.
- **CPU lane**: every other node is one Ray task per call, as before.

**Pools.** There is one actor pool per (environment, resource shape). A batch
starts its pools before its first node (:func:`batch_lanes`): each actor is
created and has unpickled the batch's node bodies, so their modules are
imported. A pool has ``ceil(concurrency / calls_per_worker)`` actors, where
concurrency is the batch's (capped by the node's ``max_in_flight``). Pools
stay up for the next batch of the same driver; a batch releases the idle
pools it does not need.

**Reservations.** An actor reserves its node's request once (``num_cpus``,
``num_gpus``, ``memory``, ``custom_resources``) for as long as it lives, and
the calls it holds share that reservation: on an I/O lane the request sizes
and places the actor, it is not held per call. GPUs and custom resources
therefore still decide where the actor runs; to bound how many calls use a
scarce thing at once, use ``max_in_flight``.

**Failures.** The calls a dead actor held fail with Ray's actor error, which
Prefect counts as a failed attempt of each node's task run and retries
(``RayConfig.max_retries``). The pool replaces the dead actor by a new one at
once (Ray does not restart it: ``max_restarts=0``); a retry runs on a live
actor of the pool with a free slot, or waits for the new one (under the node's
``queue_timeout``). The pool's other actors, and the calls they hold, are not
touched.

**Time.** The node's timeout counts the body's own run time, enforced where it
runs (a ``SIGALRM`` in a Ray task, ``asyncio.timeout`` in an actor). Waiting to
start (for a slot of the pool, a starting actor, a worker process, CPUs or a
custom resource, a rate limit) has its own limit, ``ExecutionConfig.queue_timeout``,
and exceeding it raises :class:`~wtb_prefect.errors.NodeQueueTimeoutError`
naming what was short.

**Automatic lanes.** A node whose definition does not say (``io_bound``,
``async def``, a written CPU/GPU/memory request) probes its first calls as Ray
tasks and moves to a threaded I/O lane when it waits
(:mod:`wtb_prefect.run.auto_lane`).

**Limit groups.** A node naming a group of ``ExecutionConfig.rate_limits``
takes a turn of that group (shared by every node, variant and batch of the
machine, :mod:`wtb_prefect.run.rate_limits`) before each call; a call the
provider refuses with a rate-limit answer slows the group down and is sent
again once the group lets it, without spending the node's retries or timeout.

**Rate limits.** ``max_in_flight`` and ``max_calls_per_second`` hold for one
node (or one variant of it) across every execution of the driver. They are
enforced in the driver, where all of a batch's calls start: Prefect's global
concurrency limits would cost two API round trips per node call, on the very
server whose CPU bounds throughput at high concurrency, and they do not
express a per-second pace.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from wtb_prefect.config import NodeResourceConfig, RateLimitConfig
from wtb_prefect.errors import NodeQueueTimeoutError
from wtb_prefect.run.auto_lane import IO_ACTOR_CPUS, AutoLane, body_key, fixed_lane
from wtb_prefect.run.environments import environment_setup_error, placed_options
from wtb_prefect.run.rate_limits import GroupLimiter, group_limiter
from wtb_prefect.worker.call import (
    COROUTINE_ATTR,
    EXTRAS_ATTR,
    TIMED_OUT,
    NodeLane,
    StartDeadlineExceeded,
    call_observed,
)
from wtb_prefect.worker.rate_limit import ProviderRateLimited

__all__ = [
    "LANE_OPTION",
    "ActorPool",
    "CallLimiter",
    "LaneSpec",
    "batch_lanes",
    "call_node",
    "lane_spec",
    "remote_task",
]

LANE_OPTION = "wtb_lane"
"""Key of the :class:`LaneSpec` among a node's ``remote_options`` (removed before Ray sees them)."""

GRACE_S = 30.0
"""How long the driver waits past a call's own timeout before giving up on its worker."""

_ACTOR_KEYS = ("num_cpus", "num_gpus", "memory", "resources", "runtime_env", "accelerator_type")


@dataclass(eq=False)
class LaneSpec:
    """How one node (of one variant) is called on Ray."""

    node: str
    kind: Literal["actor", "task"]
    limit_key: str
    queue_timeout: float
    request: dict[str, float]
    actor_options: dict[str, Any] = field(default_factory=dict)
    calls_per_worker: int = 32
    max_in_flight: int | None = None
    max_calls_per_second: float | None = None
    body: Any = field(default=None, repr=False)
    reason: str = ""
    """Why the node takes this lane (``async def``, ``io_bound=True``, an explicit request, ...)."""
    auto: AutoLane | None = field(default=None, repr=False)
    """Set when the node's lane is found from its first calls (its ``kind`` is then "task" until it moves)."""
    io_spec: LaneSpec | None = field(default=None, repr=False)
    """The I/O lane the node moves to when it is found to wait."""
    rate_group: str | None = None
    """The limit group (``NodeResourceConfig.rate_limit``) its calls take a turn of."""
    rate_config: RateLimitConfig | None = None

    def group_limiter(self) -> GroupLimiter | None:
        """The limiter of the node's limit group, if it names one (looked up once per spec: once per batch)."""
        if self.rate_group is None or self.rate_config is None:
            return None
        limiter = self.__dict__.get("_group_limiter")
        if limiter is None:
            limiter = self.__dict__["_group_limiter"] = group_limiter(self.rate_group, self.rate_config)
        return limiter

    @property
    def pool_key(self) -> str:
        """One pool per environment and resource shape (and calls per actor)."""
        return json.dumps([self.actor_options, self.calls_per_worker], sort_keys=True, default=repr)


def is_async_body(func: Callable[..., Any]) -> bool:
    """True for the body of an ``async def`` node (as ``dispatch`` wraps it)."""
    return getattr(func, COROUTINE_ATTR, None) is not None or inspect.iscoroutinefunction(func)


def lane_spec(
    node: str,
    func: Callable[..., Any],
    resources: NodeResourceConfig,
    ray_options: dict[str, Any],
    *,
    limit_key: str,
    queue_timeout: float,
    rate_config: RateLimitConfig | None = None,
) -> LaneSpec:
    """The lane of a node: I/O lane for ``async def`` or ``io_bound`` nodes, a Ray task each for
    ``io_bound=False`` or an explicit request, else found from its first calls (``auto``)."""
    fixed, reason = fixed_lane(resources, is_async_body(func))
    kind: Literal["actor", "task"] = fixed or "task"
    request = {"CPU": resources.num_cpus, "GPU": resources.num_gpus, "memory": float(resources.memory_bytes)}
    request.update(resources.custom_resources)
    spec = LaneSpec(
        node=node,
        kind=kind,
        limit_key=limit_key,
        queue_timeout=queue_timeout,
        request={k: v for k, v in request.items() if v > 0},
        actor_options={k: ray_options[k] for k in _ACTOR_KEYS if k in ray_options},
        calls_per_worker=resources.calls_per_worker,
        max_in_flight=resources.max_in_flight,
        max_calls_per_second=resources.max_calls_per_second,
        body=func,
        reason=reason,
        rate_group=resources.rate_limit,
        rate_config=rate_config,
    )
    if fixed is None:  # found out from its first calls; a waiting node moves to a light I/O lane
        spec.auto = AutoLane(body_key(limit_key, func) if limit_key else None)
        io_request = {**spec.request, "CPU": min(resources.num_cpus, IO_ACTOR_CPUS)}
        spec.io_spec = dataclasses.replace(
            spec,
            kind="actor",
            request={k: v for k, v in io_request.items() if v > 0},
            actor_options={**spec.actor_options, "num_cpus": min(resources.num_cpus, IO_ACTOR_CPUS)},
            auto=None,
        )
    return spec


# --- what was short --------------------------------------------------------------------------


def _shortage(request: dict[str, float]) -> str:
    """What the cluster lacks right now for ``request``, in words."""
    import ray

    try:
        available = ray.available_resources()
    except Exception:  # the cluster cannot answer: say what we know
        return "unknown (the Ray cluster did not report its free resources)"
    words = {"CPU": "CPUs", "GPU": "GPUs", "memory": "memory"}
    short = [
        f"{words.get(name, f'custom resource {name!r}')} (needs {need:g}, free {available.get(name, 0.0):g})"
        for name, need in request.items()
        if available.get(name, 0.0) < need
    ]
    return ", ".join(short) if short else "workers starting (the resources were free)"


def _queue_error(spec: LaneSpec, what: str) -> NodeQueueTimeoutError:
    return NodeQueueTimeoutError(
        f"node {spec.node!r} waited more than queue_timeout={spec.queue_timeout:g}s to start; short of: {what}. "
        "Fix: free or add what was short, lower the batch's parallelism, or raise ExecutionConfig.queue_timeout"
    )


# --- rate limits -----------------------------------------------------------------------------


class CallLimiter:
    """At most ``max_in_flight`` calls at once and ``per_second`` call starts per second."""

    def __init__(self, max_in_flight: int | None, per_second: float | None) -> None:
        self._slots = threading.BoundedSemaphore(max_in_flight) if max_in_flight else None
        self._interval = 1.0 / per_second if per_second else 0.0
        self._lock = threading.Lock()
        self._next = 0.0

    def acquire(self, deadline: float) -> str | None:
        """Wait for a turn until ``deadline`` (monotonic); returns what was short, or None when admitted."""
        if self._slots is not None and not self._slots.acquire(timeout=max(0.0, deadline - time.monotonic())):
            return "its max_in_flight limit (calls of this node already running)"
        if self._interval:
            with self._lock:
                now = time.monotonic()
                start = max(now, self._next)
                if start > deadline:
                    self.release()
                    return "its max_calls_per_second limit"
                self._next = start + self._interval
            if start > now:
                time.sleep(start - now)
        return None

    def release(self) -> None:
        """End a call admitted by :meth:`acquire`."""
        if self._slots is not None:
            self._slots.release()


_limiters: dict[tuple[str, int | None, float | None], CallLimiter] = {}
_limiters_lock = threading.Lock()


def _limiter(spec: LaneSpec) -> CallLimiter | None:
    if spec.max_in_flight is None and spec.max_calls_per_second is None:
        return None
    key = (spec.limit_key, spec.max_in_flight, spec.max_calls_per_second)
    with _limiters_lock:
        limiter = _limiters.get(key)
        if limiter is None:
            limiter = _limiters[key] = CallLimiter(spec.max_in_flight, spec.max_calls_per_second)
        return limiter


# --- actor pools -----------------------------------------------------------------------------


@dataclass(eq=False)
class LaneActor:
    """One actor of a pool and the calls it holds."""

    handle: Any
    in_flight: int = 0
    ready: bool = False
    retired: bool = False
    """Out of rotation (it failed a call or could not start, or the pool stopped): takes no new call."""


class ActorPool:
    """The actors of one I/O lane and the calls each holds; the driver picks the least busy.

    An actor that fails a call with Ray's actor error is replaced at once by a
    new one; Ray does not restart it. While Ray restarts an actor, calls sent
    to it fail (``ActorUnavailableError``, as ``max_task_retries=0``), so the
    pool would have to poll it, and a restart Ray does not complete would hold
    the retries of its calls for their whole ``queue_timeout``. A new actor is
    watched like any starting one, and a retry takes whichever live actor has a
    free slot first. The other actors, and the calls they hold, are not touched.
    """

    def __init__(self, options: dict[str, Any], per_actor: int) -> None:
        self.options = placed_options(options)
        self.per_actor = per_actor
        self.actors: list[LaneActor] = []
        self.users = 0
        self.error: BaseException | None = None
        self._bodies: list[Any] = []
        self._retired: list[LaneActor] = []
        self._cond = threading.Condition()

    def _start(self, bodies: list[Any]) -> tuple[LaneActor, Any]:
        """A new actor (not yet ready) and its readiness ref; the caller holds the lock."""
        handle = (
            _lane_class()
            .options(**self.options, max_concurrency=self.per_actor + 2, max_restarts=0, max_task_retries=0)
            .remote(max_threads=2 * self.per_actor)
        )
        return LaneActor(handle), handle.ready.remote(bodies)

    def grow(self, size: int, bodies: list[Any]) -> list[Any]:
        """Start actors until the pool has ``size``; returns their readiness refs (bodies imported)."""
        started: dict[Any, LaneActor] = {}
        with self._cond:
            if bodies:
                self._bodies = list(bodies)
            if len(self.actors) < size:
                self.error = None  # a failure to start is reported anew by the actors started now
            while len(self.actors) < size:
                actor, ref = self._start(bodies)
                self.actors.append(actor)
                started[ref] = actor
        if started:
            self._watch(started)
        return list(started)

    def _watch(self, started: dict[Any, LaneActor]) -> None:
        threading.Thread(target=self._await_ready, args=(started,), daemon=True, name="wtb-lane-start").start()

    def _await_ready(self, started: dict[Any, LaneActor]) -> None:
        """Mark each actor ready once it has imported the bodies (a killed pool fails these refs: no hang)."""
        import ray

        pending = list(started)
        while pending:
            try:
                done, pending = ray.wait(pending, num_returns=1)
            except Exception:  # the driver left the cluster: nothing to watch any more
                return
            for ref in done:
                actor = started[ref]
                try:
                    ray.get(ref)
                except BaseException as exc:  # the actor cannot start (environment, unpicklable body), or was killed
                    with self._cond:
                        if not actor.retired:  # out of the pool: a later batch starts another in its place
                            self.error = exc
                            actor.retired = True
                            self.actors.remove(actor)
                        self._cond.notify_all()
                    continue
                with self._cond:
                    actor.ready = True
                    self._cond.notify_all()

    def acquire(self, spec: LaneSpec, deadline: float) -> LaneActor:
        """A started actor with a free slot, waiting until ``deadline`` for one."""
        with self._cond:
            while True:
                live = [a for a in self.actors if a.ready]
                if self.error is not None and not live:
                    raise self.error
                free = [a for a in live if a.in_flight < self.per_actor]
                if free:
                    best = min(free, key=lambda a: a.in_flight)
                    best.in_flight += 1
                    return best
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    if not live:
                        raise _queue_error(spec, f"its I/O lane's actors had not started: {_shortage(spec.request)}")
                    raise _queue_error(
                        spec,
                        f"free slots of its I/O lane ({len(self.actors)} actors x {self.per_actor} calls, all busy)",
                    )
                self._cond.wait(remaining)

    def release(self, actor: LaneActor) -> None:
        """A call on ``actor`` ended."""
        with self._cond:
            actor.in_flight -= 1
            drained = actor.in_flight == 0 and actor in self._retired
            if drained:
                self._retired.remove(actor)
            self._cond.notify()
        if drained:
            _kill(actor.handle)

    def lost(self, actor: LaneActor) -> None:
        """``actor`` failed a call with Ray's actor error: replace it by a new actor.

        The new actor takes its place in rotation once started; retries of the
        calls the old one held wait for a free slot of a live actor (under
        their ``queue_timeout``). The old actor takes no new call and is killed
        once the calls it still holds have ended (on a dead actor they all fail
        at once). The pool's other actors are not touched.
        """
        with self._cond:
            if actor.retired:  # another of its calls already reported it
                return
            actor.retired = True
            actor.ready = False
            replacement, ref = self._start(self._bodies)
            self.actors[self.actors.index(actor)] = replacement
            self._retired.append(actor)
            self.error = None  # the replacement gets its own chance to start
        self._watch({ref: replacement})

    def kill(self) -> None:
        """Stop every actor of the pool (their reservations go back to the cluster)."""
        with self._cond:
            actors = self.actors + self._retired
            for actor in actors:
                actor.retired, actor.ready = True, False
            self._cond.notify_all()
        for actor in actors:
            _kill(actor.handle)


def _kill(handle: Any) -> None:
    import ray

    with contextlib.suppress(Exception):
        ray.kill(handle, no_restart=True)


_lane_remote: Any = None
_pools: dict[str, ActorPool] = {}
_pools_session: str | None = None
_pools_lock = threading.Lock()


def _lane_class() -> Any:
    global _lane_remote
    if _lane_remote is None:
        import ray

        _lane_remote = ray.remote(NodeLane)
    return _lane_remote


def _session() -> str:
    import ray

    return ray.get_runtime_context().get_job_id()


def _pools_of_session() -> dict[str, ActorPool]:
    """The pools of the current Ray session (pools of an earlier, shut-down cluster are dropped)."""
    global _pools_session
    session = _session()
    if session != _pools_session:
        _pools.clear()
        _pools_session = session
    return _pools


def _pool_for(spec: LaneSpec) -> ActorPool:
    """The pool of ``spec``; a call outside :func:`batch_lanes` starts a one-actor pool."""
    pool = _pools.get(spec.pool_key)
    if pool is not None:
        return pool
    with _pools_lock:
        pools = _pools_of_session()
        pool = pools.get(spec.pool_key)
        if pool is None:
            pool = pools[spec.pool_key] = ActorPool(spec.actor_options, spec.calls_per_worker)
            pool.grow(1, [spec.body])
        return pool


@contextlib.contextmanager
def batch_lanes(specs: Iterable[LaneSpec], concurrency: int) -> Iterator[None]:
    """Start the I/O lanes a batch needs before its first node, and hold them while it runs.

    Each pool gets ``ceil(min(concurrency, max_in_flight) / calls_per_worker)``
    actors; this waits (up to the nodes' ``queue_timeout``) until they have
    started and imported the node bodies, so a cold batch spends no node's
    timeout on start-up. Idle pools of earlier batches that this one does
    not need are stopped, returning their reservations.

    Raises:
        NodeQueueTimeoutError: the pools did not start in time; names what was short.
    """
    import ray

    needed: dict[str, list[LaneSpec]] = {}
    hoped: dict[str, list[LaneSpec]] = {}  # I/O lanes of nodes still to be found out
    for spec in specs:
        if spec.auto is not None and spec.io_spec is not None:
            spec.auto.concurrency = concurrency  # sizes its I/O lane if it moves there
            if spec.auto.verdict == "actor":  # found to wait by an earlier batch: its lane starts now
                needed.setdefault(spec.io_spec.pool_key, []).append(spec.io_spec)
            elif spec.auto.verdict is None:
                hoped.setdefault(spec.io_spec.pool_key, []).append(spec)
        if spec.kind == "actor":
            needed.setdefault(spec.pool_key, []).append(spec)
    with _pools_lock:
        pools = _pools_of_session()
        for key in [k for k, p in pools.items() if p.users == 0 and k not in needed and k not in hoped]:
            pools.pop(key).kill()
        stop_when_decided = [
            _start_hoped_lane(pools, key, group, concurrency) for key, group in hoped.items() if key not in needed
        ]
        held: list[ActorPool] = []
        waits: list[tuple[LaneSpec, list[Any]]] = []
        for key, group in needed.items():
            pool, refs = _grown_pool(pools, key, group, concurrency)
            pool.users += 1
            held.append(pool)
            waits.append((group[0], refs))
    for watch in stop_when_decided:
        watch()
    try:
        for spec, refs in waits:
            if not refs:
                continue
            done, pending = ray.wait(refs, num_returns=len(refs), timeout=spec.queue_timeout)
            if pending:
                raise _queue_error(spec, f"its I/O lane's actors had not started: {_shortage(spec.request)}")
            ray.get(done)  # an actor that could not start raises its error here, before any work
        yield
    finally:
        with _pools_lock:
            for pool in held:
                pool.users -= 1


def _grown_pool(
    pools: dict[str, ActorPool], key: str, group: list[LaneSpec], concurrency: int
) -> tuple[ActorPool, list[Any]]:
    """The pool under ``key``, started if missing and grown for the batch; with its new actors' readiness refs.

    It gets ``ceil(min(concurrency, max_in_flight) / calls_per_worker)`` actors
    for the busiest node of ``group`` (the specs of the lane); the caller holds
    ``_pools_lock``.
    """
    pool = pools.get(key)
    if pool is None:
        pool = pools[key] = ActorPool(group[0].actor_options, group[0].calls_per_worker)
    calls = max(min(concurrency, s.max_in_flight or concurrency) for s in group)
    return pool, pool.grow(max(1, math.ceil(calls / pool.per_actor)), [s.body for s in group])


def _start_hoped_lane(
    pools: dict[str, ActorPool], key: str, group: list[LaneSpec], concurrency: int
) -> Callable[[], None]:
    """Start, without waiting, the I/O lane that nodes still being found out move to if they wait.

    Its actors start while the first calls are measured, so that a node found
    to wait finds its lane up. The lane is stopped once every node of the
    group is found to compute (its reservation then goes back to the
    computing calls). The caller holds ``_pools_lock`` and calls the returned
    function once it has let go of it.
    """
    pool, _ = _grown_pool(pools, key, [s.io_spec for s in group if s.io_spec is not None], concurrency)

    def stop_if_all_compute(_verdict: str) -> None:
        with _pools_lock:
            if any(s.auto is None or s.auto.verdict != "task" for s in group):
                return  # one still to be found out, or found to wait
            if pool.users or pools.get(key) is not pool:
                return
            pools.pop(key)
        pool.kill()

    def watch() -> None:
        for spec in group:
            assert spec.auto is not None
            spec.auto.when_decided(stop_if_all_compute)

    return watch


# --- calling a node --------------------------------------------------------------------------

_remote_lock = threading.Lock()
_remote_calls: dict[str, Any] = {}


def remote_task(options: dict[str, Any]) -> Any:
    """The ``ray.remote`` form of the worker's call for one set of options, built once."""
    import ray

    options = placed_options(options)  # a node env reaches nodes on other machines as Ray's uv env
    key = json.dumps(options, sort_keys=True, default=repr)
    remote = _remote_calls.get(key)
    if remote is None:
        with _remote_lock:
            remote = _remote_calls.get(key)
            if remote is None:
                remote = ray.remote(**options)(call_observed) if options else ray.remote(call_observed)
                _remote_calls[key] = remote
    return remote


_FEASIBILITY_CHECK_S = 2.0
"""How often a call that has not finished checks that some alive Ray node can still run it."""


def _get(ref: Any, timeout: float | None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
    """``ray.get``, with a body's timeout raised as the plain ``TimeoutError`` it is.

    While it waits, it checks every few seconds that some alive Ray node can
    still run the call: Ray re-runs a task whose node died on another node, but
    queues it forever when no node offers its resources any more (a custom
    resource only the lost node had).

    Raises:
        ray.exceptions.GetTimeoutError: ``timeout`` passed.
        ResourceUnsatisfiableError: no alive node can run the call (it is cancelled on Ray).
    """
    import ray

    from wtb_prefect.errors import ResourceUnsatisfiableError
    from wtb_prefect.services.ray_cluster import unsatisfiable_reason

    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while True:
            step = _FEASIBILITY_CHECK_S if deadline is None else min(_FEASIBILITY_CHECK_S, deadline - time.monotonic())
            try:
                result, extras = ray.get(ref, timeout=max(step, 0.0))
                break
            except ray.exceptions.GetTimeoutError:
                if deadline is not None and time.monotonic() >= deadline:
                    raise
            reason = unsatisfiable_reason(options) if options else None
            if reason is not None:
                ray.cancel(ref, force=True)
                raise ResourceUnsatisfiableError(
                    f"a node call cannot run: {reason}. Ray would queue it forever. Fix: give the cluster a "
                    "node with that resource again and resume the execution, or lower the node's request"
                )
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, StartDeadlineExceeded):
            raise exc.cause from None
        if isinstance(exc.cause, TimeoutError):  # the body overran: a plain TimeoutError, with its timing
            error = TimeoutError(str(exc.cause))
            setattr(error, EXTRAS_ATTR, getattr(exc.cause, EXTRAS_ATTR, None))
            raise error from None
        raise
    if isinstance(result, str) and result == TIMED_OUT:
        error = TimeoutError(extras.pop("error", "the node ran longer than its timeout"))
        setattr(error, EXTRAS_ATTR, extras)
        raise error
    return result, extras


def call_node(
    spec: LaneSpec,
    options: dict[str, Any],
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    carrier: dict[str, Any] | None,
    timeout: float | None,
) -> tuple[Any, dict[str, Any]]:
    """Run one node call on its lane and wait for it: ``(result, extras)`` as the worker returns them.

    ``extras`` also says where the call ran (``lane``, ``lane_reason``) and how
    many rate-limit answers of the provider its limit group absorbed
    (``rate_limited``): such a call goes again once the group lets it, with
    the whole of its timeout, and counts no failed attempt.

    Raises:
        TimeoutError: the body ran longer than ``timeout``.
        NodeQueueTimeoutError: the call waited longer than the node's ``queue_timeout`` to start
            (waits for its limit group, back-off included, count here).
        Exception: whatever the body raised (as itself), or Ray's error for a dead worker.
    """
    deadline = time.monotonic() + spec.queue_timeout
    limiter = _limiter(spec)
    if limiter is not None:
        short = limiter.acquire(deadline)
        if short is not None:
            raise _queue_error(spec, short)
    try:
        return _call_in_group(spec, options, fn, args, kwargs, carrier, timeout, deadline)
    except Exception as exc:
        import ray

        if isinstance(exc, ray.exceptions.RuntimeEnvSetupError):  # the node's env failed to build where it runs
            raise environment_setup_error(exc, spec.limit_key, placed_options(options)) from None
        raise
    finally:
        if limiter is not None:
            limiter.release()


def _lane_of_call(spec: LaneSpec, deadline: float) -> tuple[LaneSpec, str, bool]:
    """The lane this call takes: ``(spec of the lane, reason, is_probe)``."""
    if spec.auto is None:
        return spec, spec.reason, False
    kind, reason, probe = spec.auto.choose(deadline)
    if kind == "task" or spec.io_spec is None:
        return spec, reason, probe
    io_spec = spec.io_spec
    pool = _pool_for(io_spec)
    wanted = max(1, math.ceil(min(spec.auto.concurrency, spec.max_in_flight or spec.auto.concurrency) / pool.per_actor))
    if len(pool.actors) < wanted:
        pool.grow(wanted, [spec.body])  # the pool is sized as if the batch had started it
    return io_spec, reason, False


def _usage_counts(extras: dict[str, Any]) -> tuple[int, int]:
    """Chat-model calls and tokens a node call booked (``extras["usage"]``, per model), or ``(1, 0)``."""
    usage = extras.get("usage") or {}
    calls = tokens = 0
    for counts in usage.values() if isinstance(usage, dict) else ():
        calls += int(counts.get("calls", 0))
        tokens += int(counts.get("input", 0)) + int(counts.get("output", 0))
    return max(1, calls), tokens


def _extras_of(exc: BaseException) -> dict[str, Any]:
    return getattr(exc, EXTRAS_ATTR, None) or getattr(getattr(exc, "cause", None), EXTRAS_ATTR, None) or {}


def _provider_limited(exc: BaseException) -> ProviderRateLimited | None:
    if isinstance(exc, ProviderRateLimited):
        return exc
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, ProviderRateLimited) else None


def _call_in_group(
    spec: LaneSpec,
    options: dict[str, Any],
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    carrier: dict[str, Any] | None,
    timeout: float | None,
    deadline: float,
) -> tuple[Any, dict[str, Any]]:
    """One node call on its lane, under its limit group: a rate-limit answer is retried once the group lets it."""
    group = spec.group_limiter()
    refused = 0
    while True:
        lane, reason, probe = _lane_of_call(spec, deadline)  # before the group's turn: a wait holds no turn
        lease = None
        if group is not None:
            got = group.acquire(deadline, hold_s=(timeout or 86400.0) + GRACE_S + spec.queue_timeout)
            if isinstance(got, str):
                if probe and spec.auto is not None:
                    spec.auto.lost()
                raise _queue_error(spec, got)
            lease = got
        # A probe reserves little CPU, so that a node's first calls run at once whatever it turns out to be.
        call_options = {**options, "num_cpus": min(options.get("num_cpus", 1.0), IO_ACTOR_CPUS)} if probe else options
        try:
            result, extras = _call_once(lane, call_options, fn, args, kwargs, carrier, timeout, deadline)
        except BaseException as exc:
            extras = _extras_of(exc)
            if probe and spec.auto is not None:
                if extras.get("cpu_s") is not None and extras.get("run_s") is not None:
                    spec.auto.measured(extras["cpu_s"], extras["run_s"])
                else:
                    spec.auto.lost()
            limited = _provider_limited(exc)
            if group is not None and lease is not None:
                if limited is not None:
                    group.release(lease, rate_limited=True, retry_after=limited.retry_after)
                else:
                    group.release(lease, requests=_usage_counts(extras)[0])
            if limited is not None and group is not None:
                refused += 1  # not the node's failure: the group slows down and lets it go again
                continue
            with contextlib.suppress(Exception):
                extras.update(lane="io" if lane.kind == "actor" else "task", lane_reason=reason, rate_limited=refused)
            raise
        if probe and spec.auto is not None:
            spec.auto.measured(extras.get("cpu_s", 0.0), extras.get("run_s", 0.0))
        if group is not None and lease is not None:
            requests, tokens = _usage_counts(extras)
            group.release(lease, requests=requests, tokens=tokens)
        extras.update(lane="io" if lane.kind == "actor" else "task", lane_reason=reason, rate_limited=refused)
        return result, extras


def _call_once(
    spec: LaneSpec,
    options: dict[str, Any],
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    carrier: dict[str, Any] | None,
    timeout: float | None,
    deadline: float,
) -> tuple[Any, dict[str, Any]]:
    """Run the call once on ``spec``'s lane and wait for it."""
    import ray

    if spec.kind == "actor":
        pool = _pool_for(spec)
        actor = pool.acquire(spec, deadline)
        try:
            ref = actor.handle.call.remote(fn, args, kwargs, carrier, timeout)
            try:
                return _get(ref, None if timeout is None else timeout + GRACE_S)
            except ray.exceptions.RayActorError:
                pool.lost(actor)  # a new actor takes its place; Prefect retries the call
                raise
            except ray.exceptions.GetTimeoutError:
                ray.cancel(ref)
                raise TimeoutError(
                    f"{spec.node} did not finish within {timeout}s (its actor stopped answering)"
                ) from None
        finally:
            pool.release(actor)
    # The worker enforces the timeout from the body's start, and refuses a
    # call that reaches it after the queue deadline (start_by).
    start_by = time.time() + max(0.0, deadline - time.monotonic())
    ref = remote_task(options).remote(fn, args, kwargs, carrier, timeout, start_by)
    short = None
    try:
        return _get(ref, max(0.0, deadline - time.monotonic()), options)
    except ray.exceptions.GetTimeoutError:
        short = _shortage(spec.request)  # what was short when the wait ran out
    except StartDeadlineExceeded:
        raise _queue_error(spec, _shortage(spec.request)) from None
    try:  # started in time and running, or about to be refused by its worker
        return _get(ref, None if timeout is None else timeout + GRACE_S, options)
    except StartDeadlineExceeded:
        raise _queue_error(spec, short) from None
    except ray.exceptions.GetTimeoutError:
        ray.cancel(ref, force=True)
        raise _queue_error(spec, f"{short} (or its body ignored its timeout of {timeout}s)") from None
