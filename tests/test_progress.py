"""The batch's progress artifact is updated off the batch's thread.

Pure unit tests: the Prefect API calls are faked by a server that answers
when the test lets it. A real batch's progress artifact (100% when it returns) is checked in
``test_comparison.py::test_batch_shows_comparison_and_progress_artifacts``.
"""

from __future__ import annotations

import threading

import pytest

from wtb_prefect.batch import progress as progress_module
from wtb_prefect.batch.progress import BatchProgress


class FakeAPI:
    """Progress updates that are answered only when the test releases them (a busy server)."""

    def __init__(self) -> None:
        self.sent: list[float] = []
        self.in_flight = threading.Event()
        self.release = threading.Event()

    def update(self, artifact_id: str, progress: float) -> None:
        self.in_flight.set()
        self.release.wait(30)
        self.sent.append(progress)


@pytest.fixture()
def api(monkeypatch: pytest.MonkeyPatch) -> FakeAPI:
    fake = FakeAPI()
    monkeypatch.setattr(progress_module, "create_progress_artifact", lambda progress, description: "artifact-1")
    monkeypatch.setattr(progress_module, "update_progress_artifact", fake.update)
    return fake


def test_set_never_waits_for_the_api_and_close_sends_the_latest_value(api: FakeAPI) -> None:
    progress = BatchProgress("demo batch", every=0.0)
    progress.set(10.0)
    assert api.in_flight.wait(30)  # the first update is in flight, and the server does not answer
    for done in range(2, 11):
        progress.set(10.0 * done)  # returns although the API has not answered
    assert api.sent == []
    api.release.set()
    progress.close()
    assert api.sent == [10.0, 100.0]  # the values set meanwhile were skipped for the latest


def test_close_ends_the_pause_between_updates_and_sends_the_last_value(api: FakeAPI) -> None:
    api.release.set()
    progress = BatchProgress("demo batch", every=3600.0)
    progress.set(40.0)
    assert api.in_flight.wait(30)
    progress.set(100.0)  # due only after the hour's pause, which close() ends
    progress.close()
    assert api.sent == [40.0, 100.0]


def test_without_an_artifact_set_and_close_do_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress_module, "create_progress_artifact", lambda progress, description: None)
    threads = threading.active_count()
    progress = BatchProgress("demo batch")
    progress.set(50.0)
    progress.close()
    assert threading.active_count() == threads
