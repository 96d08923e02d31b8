"""wtb_prefect: a Workflow Test Bench for LangGraph on Prefect and Ray.

Register a LangGraph workflow as a :class:`WorkflowProject`, register node and
workflow variants, and run them over a matrix of variants x test cases with
:class:`WTBTestBench`. Each run is a Prefect flow whose task runs are the
LangGraph nodes, executed on Ray with per-node resources.

Public names are imported lazily, so that Ray workers (which import
``wtb_prefect.worker.call``) do not pay for importing Prefect.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "WTBTestBench": "bench",
    "WTBRayTaskRunner": "run.task_runner",
    "EnvSpec": "config",
    "EnvironmentConfig": "config",
    "ExecutionConfig": "config",
    "FileTrackingConfig": "config",
    "NodeResourceConfig": "config",
    "RateLimitConfig": "config",
    "RaceConfig": "config",
    "RayConfig": "config",
    "WTBError": "errors",
    "WorkflowProject": "define.project",
    "workspace": "worker.workspace",
    "BatchTestResult": "analysis.batch_result",
    "ExecutionResult": "results",
    "NodeRecord": "results",
    "log_node_metrics": "worker.metrics",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'wtb_prefect' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from wtb_prefect.analysis.batch_result import BatchTestResult
    from wtb_prefect.bench import WTBTestBench
    from wtb_prefect.config import (
        EnvironmentConfig,
        EnvSpec,
        ExecutionConfig,
        FileTrackingConfig,
        NodeResourceConfig,
        RaceConfig,
        RateLimitConfig,
        RayConfig,
    )
    from wtb_prefect.define.project import WorkflowProject
    from wtb_prefect.errors import WTBError
    from wtb_prefect.results import ExecutionResult, NodeRecord
    from wtb_prefect.run.task_runner import WTBRayTaskRunner
    from wtb_prefect.worker.metrics import log_node_metrics
    from wtb_prefect.worker.workspace import workspace
