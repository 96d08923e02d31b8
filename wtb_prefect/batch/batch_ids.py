"""Batch ids: one per flow run however the run was created, and never two batches under one id.

A batch started by a flow run without an explicit ``batch_id`` takes its id
from the flow run's id (:func:`batch_id_for_flow_run`): the run's retries and
resumes find the same batch, and the id is searchable in the Prefect UI. A
batch id that names a batch the execution index has already is a resume when
the batch's inputs are the same, and refused otherwise
(:func:`check_batch_id_reuse`): two batches' results must never mix.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from wtb_prefect.errors import BatchIdConflictError, ConfigError
from wtb_prefect.run.execution_index import ExecutionIndex

__all__ = ["BATCH_ID_LENGTH", "batch_id_for_flow_run", "check_batch_id_reuse"]

BATCH_ID_LENGTH = 12
"""Hex digits of a batch id derived from a flow run id (48 random bits)."""


def batch_id_for_flow_run(flow_run_id: str | uuid.UUID) -> str:
    """The batch id of a flow run that was given none: the last 12 hex digits of its id.

    Prefect's flow run ids are UUIDv7: their first 48 bits are a millisecond
    timestamp, shared by every run the scheduler creates together. The last 48
    bits are random in UUIDv7 and UUIDv4 alike, so runs created in the same
    millisecond still get different ids (two of a million runs share one with
    probability below 2e-3), and the id is the end of the flow run's id, as
    the UI shows it.

    Raises:
        ConfigError: ``flow_run_id`` is not a UUID.
    """
    try:
        value = flow_run_id if isinstance(flow_run_id, uuid.UUID) else uuid.UUID(str(flow_run_id))
    except ValueError:
        raise ConfigError("flow_run_id", f"{flow_run_id!r} is not a UUID", "give a Prefect flow run id") from None
    return value.hex[-BATCH_ID_LENGTH:]


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def check_batch_id_reuse(
    index: ExecutionIndex,
    batch_id: str,
    *,
    project: str,
    variant_matrix: Sequence[Mapping[str, str]] | None,
    test_cases: Sequence[Mapping[str, Any]],
    repetitions: int,
) -> bool:
    """Whether ``batch_id`` names a batch of the index with exactly these inputs (then: resume it).

    False when the index has no such batch (a new one starts).

    Raises:
        BatchIdConflictError: the index has a batch of that id with another
            project, variant matrix, test cases or number of repetitions.
    """
    record = index.batch(batch_id)
    if record is None:
        return False
    matrix = [dict(m) for m in variant_matrix] if variant_matrix else [{}]
    pairs = max(1, len(record.variant_matrix or [{}]) * len(record.test_cases))
    stored_repetitions = max(1, len(index.list(batch_id=batch_id)) // pairs)
    differs = [
        name
        for name, given, stored in (
            ("project", project, record.project),
            ("variant_matrix", matrix, record.variant_matrix or [{}]),
            ("test_cases", [dict(c) for c in test_cases], record.test_cases),
            ("repetitions", repetitions, stored_repetitions),
        )
        if _canonical(given) != _canonical(stored)
    ]
    if differs:
        raise BatchIdConflictError(
            "batch_id",
            f"{batch_id!r} is an existing batch (project {record.project!r}) with another "
            f"{', '.join(differs)}; batches are never merged",
            "leave batch_id empty (each flow run gets its own), give a new one, or give the batch's own "
            f"inputs to resume it (resume={batch_id!r} reads them from the execution index)",
        )
    return True
