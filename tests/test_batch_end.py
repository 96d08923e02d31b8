"""The observers' on_batch_end: concurrent, ordered where one needs another's record, in the flow run's context."""

from __future__ import annotations

import contextvars
import threading
import time
from typing import Any

import pytest

from wtb_prefect.batch.observers import BatchObserver, end_batch

_who: contextvars.ContextVar[str] = contextvars.ContextVar("who", default="nobody")


class Recorder(BatchObserver):
    """Appends (name, event) to a shared log; ``body`` runs inside on_batch_end."""

    def __init__(self, log: list[tuple[str, str]], name: str, body: Any = None) -> None:
        self.log, self.name, self.body = log, name, body
        self.context_value: str | None = None

    def on_batch_end(self, plan: Any, batch: Any) -> None:
        self.context_value = _who.get()
        self.log.append((self.name, "start"))
        if self.body is not None:
            self.body()
        self.log.append((self.name, "end"))


class Mlflowish(Recorder):
    pass


class Reportish(Recorder):
    batch_end_after = ("Mlflowish",)


def test_observers_end_the_batch_concurrently() -> None:
    """Two observers that each wait for the other to have started both finish: they run at the same time."""
    log: list[tuple[str, str]] = []
    both = threading.Barrier(2, timeout=10)
    observers = [Recorder(log, "artifacts", both.wait), Recorder(log, "mlflow", both.wait)]
    started = time.perf_counter()
    end_batch(observers, None, None)  # type: ignore[arg-type]
    assert time.perf_counter() - started < 10
    assert not both.broken
    assert sorted(log) == sorted([("artifacts", "start"), ("artifacts", "end"), ("mlflow", "start"), ("mlflow", "end")])


def test_an_observer_starts_after_those_it_names() -> None:
    """The report (named after MLflow) starts only once MLflow's record returned, whatever the order given."""
    log: list[tuple[str, str]] = []
    observers = [Reportish(log, "report"), Mlflowish(log, "mlflow", lambda: time.sleep(0.3)), Recorder(log, "other")]
    end_batch(observers, None, None)  # type: ignore[arg-type]
    assert log.index(("mlflow", "end")) < log.index(("report", "start"))
    assert ("other", "end") in log


def test_a_failing_observer_is_logged_and_the_ones_after_it_still_run(caplog: pytest.LogCaptureFixture) -> None:
    log: list[tuple[str, str]] = []

    def fail() -> None:
        raise RuntimeError("store down")

    observers = [Mlflowish(log, "mlflow", fail), Reportish(log, "report")]
    end_batch(observers, None, None)  # type: ignore[arg-type]
    assert ("report", "end") in log
    assert "Mlflowish failed in on_batch_end" in caplog.text


def test_on_batch_end_sees_the_callers_context() -> None:
    """Each thread runs in a copy of the caller's context (Prefect's flow run context lives there)."""
    log: list[tuple[str, str]] = []
    observers = [Recorder(log, "a"), Recorder(log, "b")]
    token = _who.set("flow run 42")
    try:
        end_batch(observers, None, None)  # type: ignore[arg-type]
    finally:
        _who.reset(token)
    assert [o.context_value for o in observers] == ["flow run 42", "flow run 42"]


def test_observers_that_name_each_other_do_not_deadlock() -> None:
    class A(Recorder):
        batch_end_after = ("B",)

    class B(Recorder):
        batch_end_after = ("A",)

    log: list[tuple[str, str]] = []
    end_batch([A(log, "a"), B(log, "b")], None, None)  # type: ignore[arg-type]
    assert {name for name, event in log if event == "end"} == {"a", "b"}
