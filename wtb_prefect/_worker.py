"""Code that runs inside Ray workers. Kept free of heavy imports on purpose:
every new worker imports this module to unpickle the task body, and on a
2-core machine importing Prefect there would cost seconds per worker.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any


def call(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Call ``fn`` with ``args`` and ``kwargs``; run it to completion if it is a coroutine."""
    result = fn(*args, **kwargs)
    if inspect.iscoroutine(result):
        import asyncio

        result = asyncio.run(result)
    return result
