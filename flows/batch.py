"""Deployment entrypoint of the ``wtb-batch-test`` flow (``flows/batch.py:batch_test``).

The flow is defined once, in :mod:`wtb_prefect.batch.flows`; this file only
gives ``prefect.yaml`` a path to it (and ``python flows/batch.py`` serves it).
"""

from wtb_prefect.batch.flows import batch_test_flow as batch_test

__all__ = ["batch_test"]

if __name__ == "__main__":
    batch_test.serve(name="wtb-batch-test-served")
