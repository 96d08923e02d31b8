"""A process taking turns of a limit group, for the cross-process test of :mod:`wtb_prefect.run.rate_limits`.

Kept apart from the test module so a spawned child imports only the limiter,
not the test module's graphs, LangChain and OpenAI.
"""

from __future__ import annotations

import os
import threading
import time

from wtb_prefect.config import RateLimitConfig
from wtb_prefect.run.rate_limits import DIR_ENV, GroupLimiter


def hold(directory: str, log: str, calls: int) -> None:
    """Take ``calls`` turns of a group limited to 3 in flight, each held a moment, logging start and end."""
    os.environ[DIR_ENV] = directory
    limiter = GroupLimiter("shared", RateLimitConfig(max_in_flight=3))

    def one() -> None:
        lease = limiter.acquire(time.monotonic() + 60)
        assert not isinstance(lease, str), lease
        with open(log, "a") as handle:
            handle.write(f"{time.time_ns()} start\n")
        time.sleep(0.05)  # held long enough that the two processes' turns overlap
        with open(log, "a") as handle:
            handle.write(f"{time.time_ns()} end\n")
        limiter.release(lease)

    threads = [threading.Thread(target=one) for _ in range(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
