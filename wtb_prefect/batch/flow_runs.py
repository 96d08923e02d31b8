"""Closing the Prefect flow runs of drivers that were killed or lost the API.

A flow-run process killed with SIGKILL cannot report its end, so its flow run
stays "Running" in the Prefect UI. When wtb_prefect resumes an execution whose
process is gone, it marks that old flow run Crashed, naming the flow run that
took the work over.

A batch whose Prefect API went away before it ended keeps what the API missed
in the execution index (see :mod:`wtb_prefect.services.prefect_outage`);
resuming the batch sends it (:func:`record_unrecorded`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wtb_prefect.run.execution_index import ExecutionIndex

__all__ = ["batch_flow_run_name", "mark_crashed", "open_flow_runs", "record_unrecorded"]

logger = logging.getLogger(__name__)


def batch_flow_run_name(project: str, batch_id: str) -> str:
    """The name of every flow run of a batch (its first run and each resume)."""
    return f"{project}-batch-{batch_id}"


def open_flow_runs(name: str) -> list[str]:
    """Ids of the flow runs of that name that are not in a final state (empty when the API fails)."""
    from prefect import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterName,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    open_states = [StateType.RUNNING, StateType.PENDING, StateType.SCHEDULED]
    try:
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    name=FlowRunFilterName(any_=[name]),
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=open_states)),
                )
            )
    except Exception as exc:
        logger.warning("could not look up the open flow runs named %s: %s", name, exc)
        return []
    return [str(run.id) for run in runs]


def mark_crashed(flow_run_ids: Iterable[str], taken_over_by: str | None) -> list[str]:
    """Set each flow run that is not yet in a final state to Crashed; return those changed.

    Never raises: the UI state of an old flow run must not stop a resume.
    """
    import uuid

    from prefect import get_client
    from prefect.states import Crashed

    changed: list[str] = []
    message = "its flow-run process died" + (
        f"; flow run {taken_over_by} resumed its executions" if taken_over_by else ""
    )
    try:
        with get_client(sync_client=True) as client:
            for flow_run_id in sorted(set(flow_run_ids) - {taken_over_by}):
                run = client.read_flow_run(uuid.UUID(flow_run_id))
                if run.state is not None and run.state.is_final():
                    continue
                client.set_flow_run_state(run.id, Crashed(message=message), force=True)
                changed.append(flow_run_id)
    except Exception as exc:  # the API is down, or the run was deleted
        logger.warning("could not mark the flow runs of dead drivers Crashed: %s", exc)
    return changed


def record_unrecorded(index: ExecutionIndex, batch_id: str) -> dict[str, int]:
    """Send the Prefect API what it missed of batch ``batch_id`` while it was unreachable.

    The kept task-run events go to the API's event intake (its task-run
    recorder turns them into the task runs and their states) and each flow
    run whose end was missed gets its final state. Returns counts of both.
    Never raises: what could not be sent stays in the index for the next resume.
    """
    import json
    import uuid

    from prefect import get_client
    from prefect.states import State, StateType

    counts = {"flow_runs": 0, "events": 0}
    pending = index.unrecorded(batch_id)
    if not pending:
        return counts
    try:
        with get_client(sync_client=True) as client:
            for run in pending:
                for start in range(0, len(run.events), 500):
                    chunk = run.events[start : start + 500]
                    response = client._client.post("/events", json=[json.loads(e) for e in chunk])
                    response.raise_for_status()
                    counts["events"] += len(chunk)
                current = client.read_flow_run(uuid.UUID(run.flow_run_id))
                if current.state is None or not current.state.is_final():
                    client.set_flow_run_state(
                        current.id, State(type=StateType(run.state), message=run.message), force=True
                    )
                    counts["flow_runs"] += 1
                index.clear_unrecorded(batch_id, run.flow_run_id)
    except Exception as exc:
        logger.warning("could not record what the Prefect API missed of batch %s: %s", batch_id, exc)
    logger.info(
        "recorded what the Prefect API missed of batch %s: %d flow run(s), %d task-run events",
        batch_id,
        counts["flow_runs"],
        counts["events"],
    )
    return counts
