"""Closing the Prefect flow runs of drivers that were killed.

A flow-run process killed with SIGKILL cannot report its end, so its flow run
stays "Running" in the Prefect UI. When wtb_prefect resumes an execution whose
process is gone, it marks that old flow run Crashed, naming the flow run that
took the work over.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

__all__ = ["mark_crashed"]

logger = logging.getLogger(__name__)


def mark_crashed(flow_run_ids: Iterable[str], taken_over_by: str | None) -> list[str]:
    """Set each flow run that is not yet in a final state to Crashed; return those changed.

    Never raises: the UI state of an old flow run must not stop a resume.
    """
    import uuid

    from prefect import get_client
    from prefect.states import Crashed

    changed: list[str] = []
    message = "its flow-run process died" + (f"; flow run {taken_over_by} resumed its executions" if taken_over_by else "")
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
