"""A provider's rate-limit answer, recognised in the worker and carried back to the driver.

A node body that calls an LLM API fails with the client's own error when the
provider answers HTTP 429: ``openai.RateLimitError``, ``anthropic.RateLimitError``,
``httpx.HTTPStatusError`` with a 429 response, or any exception with a
``status_code`` of 429 (directly or on its ``response``). Several of those do
not survive pickling (their constructors take keyword-only arguments), so the
worker replaces such an error by :class:`ProviderRateLimited`, which does and
which carries the provider's ``Retry-After`` in seconds. The driver's limit
group (``wtb_prefect.run.rate_limits``) reads it to slow down and retries the
call. Standard library only: this runs in Ray workers.
"""

from __future__ import annotations

import email.utils
import time
from typing import Any

__all__ = ["ProviderRateLimited", "rate_limited", "retry_after_s"]


class ProviderRateLimited(Exception):
    """The provider answered a node's request with a rate-limit error (HTTP 429).

    Attributes:
        retry_after: seconds the provider asked to wait (None when it did not say).
        original: the type name of the client's error.
    """

    def __init__(self, message: str, retry_after: float | None = None, original: str = "") -> None:
        super().__init__(message, retry_after, original)
        self.retry_after = retry_after
        self.original = original

    def __str__(self) -> str:
        return str(self.args[0])


def _status(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    if status is None:
        status = getattr(getattr(exc, "response", None), "status_code", None)
    return status if isinstance(status, int) else None


def retry_after_s(headers: Any) -> float | None:
    """The wait a response's headers ask for, in seconds: ``retry-after-ms``, ``retry-after`` (seconds or a date)."""
    if headers is None:
        return None
    try:
        millis = headers.get("retry-after-ms")
        if millis is not None:
            return max(0.0, float(millis) / 1000.0)
        value = headers.get("retry-after")
    except Exception:  # headers of an unexpected shape: no advice
        return None
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def rate_limited(exc: BaseException) -> ProviderRateLimited | None:
    """``exc`` (or an error it was raised from) as a :class:`ProviderRateLimited`, if it is a rate-limit answer."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ProviderRateLimited):
            return current
        if _status(current) == 429 or type(current).__name__ == "RateLimitError":
            headers = getattr(getattr(current, "response", None), "headers", None)
            return ProviderRateLimited(
                f"{type(current).__name__}: {current}", retry_after_s(headers), type(current).__name__
            )
        current = current.__cause__ or current.__context__
    return None
