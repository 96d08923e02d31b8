"""Prefect block types of wtb_prefect.

A :class:`WTBProject` block saves a project reference with the settings its
runs use, so a deployment parameter can name a saved project
(``project="wtb-project/quickstart"``). The other blocks hold the settings a
team shares across deployments: the Ray cluster, the MLflow tracking server and
the checkpoint database (its URL is a secret field).

Register the types with ``prefect block register -m wtb_prefect.integrations.blocks`` (or
``python blocks/register.py``, which also creates default documents).
"""

from __future__ import annotations

import os
from typing import Literal

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from wtb_prefect.config import ExecutionConfig
from wtb_prefect.define.project import WorkflowProject
from wtb_prefect.define.registry import register_reference_resolver, resolve_project
from wtb_prefect.errors import UnknownProjectError

__all__ = ["CheckpointDatabase", "MLflowTracking", "RayCluster", "WTBProject"]


class RayCluster(Block):
    """The Ray cluster that runs the node tasks of a project's flow runs."""

    _block_type_name = "WTB Ray Cluster"
    _block_type_slug = "wtb-ray-cluster"
    _description = "Ray cluster address and how many executions run at once."

    address: str = Field(
        default="auto",
        description="'auto' joins a running cluster or starts a local one; 'local'; 'ray://host:10001' or 'host:6379'.",
    )
    max_concurrent_workflows: int | None = Field(
        default=None, ge=1, description="Executions at once; empty keeps the project's setting."
    )


class MLflowTracking(Block):
    """Where variant metrics are recorded."""

    _block_type_name = "WTB MLflow Tracking"
    _block_type_slug = "wtb-mlflow-tracking"
    _description = "MLflow tracking URI and experiment name used by a project's flow runs."

    tracking_uri: str = Field(description="e.g. 'http://127.0.0.1:5000' or 'sqlite:///mlflow.db'.")
    experiment_name: str | None = Field(default=None, description="Empty: the project's name.")


class CheckpointDatabase(Block):
    """The LangGraph checkpoint store of a project's executions."""

    _block_type_name = "WTB Checkpoint Database"
    _block_type_slug = "wtb-checkpoint-database"
    _description = "Checkpoint storage (sqlite or postgres) and its connection URL (secret)."

    storage: Literal["memory", "sqlite", "postgres"] = Field(default="sqlite")
    url: SecretStr | None = Field(
        default=None,
        description="PostgreSQL connection string, or a SQLite file; empty = the project's state folder.",
    )


class WTBProject(Block):
    """A saved project reference plus the shared settings its runs use."""

    _block_type_name = "WTB Project"
    _block_type_slug = "wtb-project"
    _description = "A wtb_prefect project ('package.module:attribute' or a YAML path) with its settings."

    reference: str = Field(
        description="'package.module:attribute' (a WorkflowProject or a function returning one) or a YAML file path."
    )
    ray_cluster: RayCluster | None = None
    mlflow: MLflowTracking | None = None
    checkpoints: CheckpointDatabase | None = None

    def resolve(self) -> WorkflowProject:
        """The referenced project with this block's settings applied.

        The MLflow settings are set as ``MLFLOW_TRACKING_URI`` and
        ``MLFLOW_EXPERIMENT_NAME`` in this process (a flow run has its own).
        """
        project = resolve_project(self.reference)
        update: dict = {}
        if self.ray_cluster is not None:
            ray = {"address": self.ray_cluster.address}
            if self.ray_cluster.max_concurrent_workflows is not None:
                ray["max_concurrent_workflows"] = self.ray_cluster.max_concurrent_workflows
            update["ray_config"] = {**project.execution.ray_config.model_dump(), **ray}
        if self.checkpoints is not None:
            update["checkpoint_storage"] = self.checkpoints.storage
            update["checkpoint_url"] = self.checkpoints.url.get_secret_value() if self.checkpoints.url else None
        if update:
            project.execution = ExecutionConfig.model_validate({**project.execution.model_dump(), **update})
        if self.mlflow is not None:
            os.environ["MLFLOW_TRACKING_URI"] = self.mlflow.tracking_uri
            os.environ["MLFLOW_EXPERIMENT_NAME"] = self.mlflow.experiment_name or project.name
        return project

    @classmethod
    def load_project(cls, name: str) -> WorkflowProject:
        """Load the block document ``name`` and resolve its project.

        Raises:
            UnknownProjectError: no such block document.
        """
        try:
            block = cls.load(name)
        except ValueError as exc:
            raise UnknownProjectError(
                f"no saved project block 'wtb-project/{name}' ({exc}). "
                "Fix: run 'python blocks/register.py' or save a WTBProject block of that name"
            ) from exc
        return block.resolve()


BLOCK_PREFIX = "wtb-project/"
register_reference_resolver(
    BLOCK_PREFIX, lambda reference: WTBProject.load_project(reference.removeprefix(BLOCK_PREFIX))
)
