"""wtb_prefect: a Workflow Test Bench for LangGraph on Prefect and Ray.

Register a LangGraph workflow as a :class:`WorkflowProject`, register node and
workflow variants, and run them over a matrix of variants x test cases with
:class:`WTBTestBench`. Each run is a Prefect flow whose task runs are the
LangGraph nodes, executed on Ray with per-node resources.

Public names are imported lazily, so that Ray workers (which import
``wtb_prefect._worker``) do not pay for importing Prefect.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "WTBTestBench": "bench",
    "EnvSpec": "config",
    "EnvironmentConfig": "config",
    "ExecutionConfig": "config",
    "FileTrackingConfig": "config",
    "NodeResourceConfig": "config",
    "RayConfig": "config",
    "WTBError": "errors",
    "WorkflowProject": "project",
    "workspace": "_workspace",
    "BatchTestResult": "results",
    "ExecutionResult": "results",
    "NodeRecord": "results",
    "log_node_metrics": "node_metrics",
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
    from .bench import WTBTestBench
    from .config import EnvironmentConfig, EnvSpec, ExecutionConfig, FileTrackingConfig, NodeResourceConfig, RayConfig
    from .errors import WTBError
    from ._workspace import workspace
    from .project import WorkflowProject
    from .node_metrics import log_node_metrics
    from .results import BatchTestResult, ExecutionResult, NodeRecord
