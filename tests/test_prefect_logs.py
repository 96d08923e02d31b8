"""What a batch sends to the Prefect API's logs: failures, not a line per finished node."""

from __future__ import annotations

import logging
import time
import uuid

from prefect import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId, TaskRunFilter, TaskRunFilterFlowRunId
from prefect.logging.handlers import APILogWorker

from tests.graphs import marked_steps
from tests.test_control import _name, _state


def _flow_run_logs_with_error(flow_run_id: str) -> list:
    """The flow run's logs, once an ERROR is among them (logs are shipped in the background)."""
    APILogWorker.drain_all(timeout=10)
    deadline = time.monotonic() + 20
    with get_client(sync_client=True) as client:
        while True:
            logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[uuid.UUID(flow_run_id)])))
            if any(log.level >= logging.ERROR for log in logs) or time.monotonic() > deadline:
                return logs
            time.sleep(0.5)


def test_batch_logs_failures_but_not_a_finished_line_per_node(bench, tmp_path):
    name = _name("logs_batch")
    bench.register_project(marked_steps.make_project(name, "sqlite"))
    task_logger = logging.getLogger("prefect.task_runs")
    level_before = task_logger.level
    cases = [_state(tmp_path, x=0), _state(tmp_path, x=1, fail_node="b")]
    batch = bench.run_batch_test(name, [{}], cases, parallelism=2)
    assert [r.status for r in batch] == ["completed", "failed"]
    assert task_logger.level == level_before  # the batch's level does not outlive it

    logs = _flow_run_logs_with_error(batch.flow_run_id)
    task_logs = [log for log in logs if log.task_run_id is not None]
    assert not [log.message for log in task_logs if log.level < logging.WARNING]
    failure = [log for log in task_logs if log.level >= logging.ERROR]
    assert failure and any("fails on purpose" in log.message for log in failure)
    assert any("batch" in log.message for log in logs if log.task_run_id is None)  # the flow's own summary line

    # Every node is still a task run in the UI, ending in its final state (the
    # server records task runs from events in the background: wait for it).
    flow_run = TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[uuid.UUID(batch.flow_run_id)]))
    deadline = time.monotonic() + 30
    with get_client(sync_client=True) as client:
        while True:
            # A task run recorded from its first event may not carry a state yet.
            runs = client.read_task_runs(task_run_filter=flow_run)
            states = sorted(run.state.type.value if run.state else "NO STATE YET" for run in runs)
            if len(states) == 6 and not {"RUNNING", "NO STATE YET"} & set(states) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    assert sum(len(r.nodes) for r in batch) == 6  # 4 nodes of the good case, a and b of the failing one
    assert states == ["COMPLETED"] * 5 + ["FAILED"]
