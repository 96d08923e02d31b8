"""The batch's progress artifact in the Prefect UI, updated off the batch's critical path.

Updating a progress artifact is an API call. During a batch the server is busy
recording its task runs, so one update can wait long on a loaded server.
Made from the flow's thread, the last update (100%) would sit between the last
execution's end and the batch's analysis and records. :class:`BatchProgress`
sends updates from a background thread instead, the latest value only, and
``close()`` waits for the last one, while the batch's end-of-run work goes on.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time

from prefect.artifacts import create_progress_artifact, update_progress_artifact

from wtb_prefect.services.prefect_outage import best_effort

__all__ = ["BatchProgress"]

logger = logging.getLogger(__name__)


class BatchProgress:
    """A Prefect progress artifact of one batch; :meth:`set` never waits for the API.

    A background thread sends the latest percentage at most once per ``every``
    seconds (values set in between are skipped: only the latest matters).
    :meth:`close` sends the final value, if it was not sent yet, and waits for
    it: the artifact shows it once the flow run has ended. Like every
    best-effort API call of a batch, an update is skipped while the API is
    unreachable.

    Example:
        ```python
        progress = BatchProgress("quickstart batch 1a2b3c")  # inside a flow run
        progress.set(50.0)  # returns at once
        progress.close()  # the artifact shows 50% when this returns
        ```
    """

    def __init__(self, description: str, every: float = 1.0) -> None:
        self._id = best_effort("progress artifact", create_progress_artifact, progress=0.0, description=description)
        self._every = every
        self._latest: float | None = None
        self._closed = False
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        if self._id is not None:
            context = contextvars.copy_context()  # the flow run's settings and client context
            self._thread = threading.Thread(
                target=context.run, args=(self._send_loop,), name="wtb-progress", daemon=True
            )
            self._thread.start()

    def set(self, percent: float) -> None:
        """Make ``percent`` the value to show next (sent in the background)."""
        with self._wake:
            self._latest = percent
            self._wake.notify()

    def close(self) -> None:
        """Send the latest value if it is not sent yet, and wait until it is."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join()

    def _send_loop(self) -> None:
        last_sent_at = float("-inf")
        while True:
            with self._wake:
                while self._latest is None and not self._closed:
                    self._wake.wait()
                if self._latest is None:  # closed, nothing left to send
                    return
                if not self._closed:
                    pause = last_sent_at + self._every - time.monotonic()
                    if pause > 0:
                        self._wake.wait(pause)  # a close() ends the pause early
                        continue
                percent, self._latest = self._latest, None
            self._send(percent)
            last_sent_at = time.monotonic()

    def _send(self, percent: float) -> None:
        try:
            best_effort("progress update", update_progress_artifact, artifact_id=self._id, progress=percent)
        except Exception:  # an unexpected API answer: the batch goes on without its progress bar
            logger.warning("the batch's progress artifact could not be updated", exc_info=True)
