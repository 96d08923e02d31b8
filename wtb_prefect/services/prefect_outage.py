"""Working on while the Prefect API is unreachable.

The Prefect API is the *record* of a batch, not a dependency of its work:
node bodies run on Ray, LangGraph keeps the state in its checkpointer and the
execution index keeps every result. Task runs reach the API only as events
(buffered by Prefect's events worker) and logs (buffered by its log worker).
What could wait on the API is made bounded here:

- :func:`best_effort` makes one API call that may be skipped (progress and
  table artifacts): after the first connection failure the API counts as
  down and later calls are skipped and counted instead of each waiting out
  Prefect's client retries.
- :func:`bounded_api_waits` caps Prefect's client retries for the flow's own
  state calls, so a flow run whose end cannot be recorded fails within seconds.
- :func:`hold_back_buffered_work` takes the events the API never confirmed out
  of Prefect's events worker (to be sent by the reconciliation, see
  :mod:`wtb_prefect.flow_runs`), drops the buffered logs with a count, and
  stops both workers so that the process exits promptly: Prefect would
  otherwise retry every buffered event, for seconds each, at interpreter exit.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

__all__ = [
    "HeldBack",
    "api_answers",
    "api_down",
    "best_effort",
    "bounded_api_waits",
    "hold_back_buffered_work",
    "is_api_error",
    "mark_api_up",
    "skipped_calls",
]

logger = logging.getLogger(__name__)
T = TypeVar("T")

API_RETRIES = 2
"""Prefect client retries of one API call during a batch: few, so that an outage is noticed quickly."""

_lock = threading.Lock()
_down_since: float | None = None
_skipped: dict[str, int] = {}


def is_api_error(exc: BaseException) -> bool:
    """True when ``exc`` (or its cause) says the Prefect API could not be reached or failed."""
    from prefect.exceptions import PrefectHTTPStatusError

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (httpx.TransportError, ConnectionError, TimeoutError)):
            return True
        if isinstance(current, PrefectHTTPStatusError) and current.response.status_code >= 500:
            return True
        current = current.__cause__ or current.__context__
    return False


def api_answers(api_url: str | None = None, timeout: float = 2.0) -> bool:
    """Whether the Prefect API (``api_url`` or the configured one) answers its health check now."""
    if api_url is None:
        from prefect.settings import PREFECT_API_URL

        api_url = PREFECT_API_URL.value()
    if not api_url:
        return False
    try:
        # verify=False for plain http: no TLS is used, and loading the CA bundle costs CPU on every check
        url = f"{api_url.rstrip('/')}/health"
        return httpx.get(url, timeout=timeout, verify=not url.startswith("http://")).status_code == 200
    except httpx.HTTPError:
        return False


def api_down() -> bool:
    """True once a best-effort call found the API unreachable (until :func:`mark_api_up`)."""
    return _down_since is not None


def mark_api_up() -> None:
    """Forget an earlier outage (the API answered again): calls and events go to it again."""
    global _down_since
    from prefect.events.worker import EventsWorker

    with _lock:
        _down_since = None
        _skipped.clear()
    if EventsWorker._client_override is not None and EventsWorker._client_override[0].__name__ == "NullEventsClient":
        EventsWorker.set_client_override(None)


def _mark_down(what: str, exc: BaseException) -> None:
    global _down_since
    with _lock:
        first = _down_since is None
        if first:
            _down_since = time.monotonic()
    if first:
        logger.warning(
            "the Prefect API is unreachable (%s: %s); executions go on and their results are kept in the "
            "execution index; further API calls of this batch are skipped",
            what,
            exc,
        )


def skipped_calls() -> dict[str, int]:
    """How many best-effort API calls of each kind were skipped since the API went down."""
    with _lock:
        return dict(_skipped)


@contextlib.contextmanager
def bounded_api_waits(retries: int = API_RETRIES) -> Iterator[None]:
    """Cap Prefect's client retries (by default 5, i.e. about a minute per failing call)."""
    from prefect.settings import PREFECT_CLIENT_MAX_RETRIES

    from wtb_prefect.services.prefect_settings import settings_override

    with settings_override({PREFECT_CLIENT_MAX_RETRIES: retries}):  # built once, not per call
        yield


def best_effort(what: str, call: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """``call(*args, **kwargs)`` unless the API is down; None when it is skipped or fails to reach it.

    Errors other than the API's being unreachable are raised as usual.
    """
    if api_down():
        with _lock:
            _skipped[what] = _skipped.get(what, 0) + 1
        return None
    try:
        with bounded_api_waits(0):
            return call(*args, **kwargs)
    except Exception as exc:
        if not is_api_error(exc):
            raise
        _mark_down(what, exc)
        with _lock:
            _skipped[what] = _skipped.get(what, 0) + 1
        return None


@dataclass
class HeldBack:
    """What Prefect's workers had buffered for the API when it was found unreachable."""

    events: list[str] = field(default_factory=list)
    """The events (JSON) the API never confirmed, kept to be sent once it is back."""
    logs_dropped: int = 0
    """Buffered log lines dropped (logs are not part of the record)."""


def _take_queue(worker: Any) -> list[Any]:
    items = []
    while True:
        try:
            item = worker._queue.get_nowait()
        except Exception:  # queue.Empty
            return items
        if item is not None:
            items.append(item)
        worker._queue.task_done()


def _with_flow_run(worker: Any, event: Any) -> Any:
    """``event`` with its flow run among its related resources.

    Prefect's events worker adds the run context's resources to an event only
    when it sends it; an event still queued has only the context it was made
    in. The task-run recorder needs the flow run to file the task run under it.
    """
    from prefect.context import FlowRunContext, TaskRunContext
    from prefect.events.schemas.events import RelatedResource

    if any(r.role == "flow-run" for r in event.related):
        return event
    context = worker._context_cache.pop(event.id, None)
    if context is None:
        return event

    def flow_run() -> tuple[Any, Any]:
        run = getattr(FlowRunContext.get(), "flow_run", None)
        task_run = getattr(TaskRunContext.get(), "task_run", None)
        return getattr(run, "id", None) or getattr(task_run, "flow_run_id", None), getattr(run, "name", None)

    flow_run_id, name = context.run(flow_run)
    if flow_run_id is not None:
        resource = {"prefect.resource.id": f"prefect.flow-run.{flow_run_id}", "prefect.resource.role": "flow-run"}
        if name:
            resource["prefect.resource.name"] = name
        event.related.append(RelatedResource.model_validate(resource))
    return event


def _stop_now(worker: Any) -> None:
    """Stop a Prefect queue service without handling what it holds (its current item included)."""
    task, loop = worker._task, worker._loop
    worker._stop()
    if task is not None and loop is not None and not loop.is_closed():
        loop.call_soon_threadsafe(task.cancel)


def hold_back_buffered_work() -> HeldBack:
    """Take the unsent events out of Prefect's events worker, drop its buffered logs, stop both.

    Later events of this process go nowhere (counted as dropped by Prefect's
    null client) until :func:`mark_api_up`. Never raises.
    """
    held = HeldBack()
    try:
        from prefect.events.clients import NullEventsClient
        from prefect.events.worker import EventsWorker
        from prefect.logging.handlers import APILogWorker

        EventsWorker.set_client_override(NullEventsClient)
        services = list(EventsWorker._instances.values())  # the registry of every Prefect queue service
        for worker in [s for s in services if isinstance(s, EventsWorker)]:
            client = getattr(worker, "_client", None)
            unconfirmed = list(getattr(client, "_unconfirmed_events", []) or [])
            queued = [_with_flow_run(worker, event) for event in _take_queue(worker)]
            _stop_now(worker)
            seen: set[Any] = set()
            for event in [*unconfirmed, *queued]:
                if event.id not in seen:
                    seen.add(event.id)
                    held.events.append(event.model_dump_json())
        for worker in [s for s in services if isinstance(s, APILogWorker)]:
            held.logs_dropped += len(_take_queue(worker))
            _stop_now(worker)
    except Exception:  # Prefect internals changed: the process may wait at exit, but nothing is lost
        logger.exception("could not hold back Prefect's buffered events and logs")
    if held.logs_dropped:
        logger.warning("dropped %d log lines buffered for the unreachable Prefect API", held.logs_dropped)
    return held
