"""Deployment entrypoint of the ``wtb-run`` flow (``flows/single_run.py:single_run``).

The flow is defined once, in :mod:`wtb_prefect.batch.flows`.
"""

from wtb_prefect.batch.flows import run_flow as single_run

__all__ = ["single_run"]
