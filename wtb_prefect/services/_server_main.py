"""Entry point of the embedded Prefect server process: ``prefect server start`` with a calmer idle loop.

Prefect's server runs its background services on a docket worker that, with
the in-memory backend, polls for due work and for task cancellations
several times a second (a thread hop each time). On an idle server that
polling is most of its CPU; once a second is enough for a local test bench
(background work such as marking runs late or reaping leases waits at most a
second longer). On SQLite, write transactions wait for the lock instead of
failing, and the recorders' multi-row INSERTs are compiled once
(:mod:`wtb_prefect.services.prefect_sqlite`). Everything else is Prefect's own
CLI, unchanged. Each calming change is skipped when the library's shape is not
the expected one.
"""

from __future__ import annotations

import inspect
import logging
import sys
from datetime import timedelta

_POLL = timedelta(seconds=1)


def _calm_docket_worker() -> None:
    try:
        from docket.worker import Worker

        init = Worker.__init__
        names = [n for n, p in inspect.signature(init).parameters.items() if p.default is not inspect.Parameter.empty]
        defaults = list(init.__defaults__ or ())
        for name in ("minimum_check_interval", "scheduling_resolution"):
            if name in names and len(defaults) == len(names):
                defaults[names.index(name)] = _POLL
        init.__defaults__ = tuple(defaults)
    except Exception:  # another docket version: run with Prefect's defaults
        logging.getLogger(__name__).debug("docket worker defaults left unchanged", exc_info=True)


def _calm_pubsub() -> None:
    """The in-memory pub/sub (burner_redis) waits for messages in longer slices than its default, so an idle server wakes less often."""
    try:
        import asyncio
        import queue
        import time

        from burner_redis.pubsub import PubSub

        if not inspect.iscoroutinefunction(getattr(PubSub, "_queue_get", None)):
            return

        async def _queue_get(self, timeout):  # noqa: ANN001, ANN202 (burner_redis's signature)
            if timeout == 0.0:
                try:
                    return self._queue.get_nowait()
                except queue.Empty:
                    return None
            deadline = None if timeout is None else time.monotonic() + max(timeout, _POLL.total_seconds())
            while True:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                wait = _POLL.total_seconds() if remaining is None else min(remaining, _POLL.total_seconds())
                try:
                    return await asyncio.to_thread(self._queue.get, True, wait)
                except queue.Empty:
                    continue

        PubSub._queue_get = _queue_get
    except Exception:
        logging.getLogger(__name__).debug("burner_redis pub/sub left unchanged", exc_info=True)


def main() -> None:
    """Run ``prefect <argv>`` (normally ``server start ...``) in this process."""
    from wtb_prefect.services.prefect_sqlite import executemany_inserts, immediate_write_transactions

    _calm_docket_worker()
    _calm_pubsub()
    immediate_write_transactions()  # SQLite write transactions wait for the lock instead of failing
    executemany_inserts()  # the recorders' multi-row INSERTs compiled once, not at every flush
    from prefect.cli import app

    sys.argv = ["prefect", *sys.argv[1:]]
    sys.exit(app())


if __name__ == "__main__":
    main()
