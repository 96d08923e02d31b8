"""Whether the flow run at hand runs a batch or a single execution.

``wtb run`` (and ``WTBTestBench.run``/``resume``) go through the same batch
machinery with one execution, in a flow run of the flow ``wtb-run``. The
integrations that describe a *batch* (its MLflow parent run, its comparison
artifacts, its report) stay out of those.
"""

from __future__ import annotations

__all__ = ["SINGLE_RUN_FLOW", "is_single_run"]

SINGLE_RUN_FLOW = "wtb-run"


def is_single_run() -> bool:
    """True inside a flow run of ``wtb-run`` (one execution, not a batch)."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    return context is not None and context.flow is not None and context.flow.name == SINGLE_RUN_FLOW
