"""One process at a time starts a service of a state folder; the others then find it running."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from wtb_prefect.errors import ServiceError

__all__ = ["one_starter"]


@contextmanager
def one_starter(lock_path: Path, service: str, timeout: float) -> Iterator[None]:
    """Hold ``lock_path`` while checking for and starting ``service``.

    Two batches started at once in a new state folder would otherwise both
    start a server on the same database. The operating system releases the lock
    of a process that dies, so a starter killed half-way blocks nobody.

    Raises:
        ServiceError: another process has held the lock for ``timeout`` seconds.
    """
    from filelock import FileLock, Timeout

    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(lock_path)
    try:
        lock.acquire(timeout=timeout)
    except Timeout:
        raise ServiceError(
            f"another process has been starting {service} of this state folder for {timeout:.0f}s "
            f"(it holds {lock_path}). Fix: wait for it, or stop it and run `wtb down` before starting again"
        ) from None
    try:
        yield
    finally:
        lock.release()
