"""Process-wide settings of wtb_prefect, read from ``WTB_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["WTBSettings", "get_settings"]


class WTBSettings(BaseSettings):
    """Where wtb_prefect keeps its state and which services it talks to.

    Every field can be set by an environment variable of the same name with
    the ``WTB_`` prefix, e.g. ``WTB_HOME=/tmp/wtb``.
    """

    model_config = SettingsConfigDict(env_prefix="WTB_", extra="ignore")

    home: Path = Field(default=Path(".wtb"), description="State folder: server DB, checkpoints, runs.")
    prefect_api_url: str | None = Field(
        default=None,
        description="Use this Prefect API instead of the embedded server (PREFECT_API_URL also works).",
    )
    prefect_database_url: str | None = Field(
        default=None,
        description="Database of the embedded Prefect server; None = SQLite under home.",
    )
    prefect_port: int = Field(default=4200, description="Port of the embedded Prefect server.")
    auto_start_server: bool = Field(default=True, description="Start the embedded Prefect server when none answers.")
    mlflow_enabled: bool = Field(default=True, description="Record every batch in MLflow.")
    mlflow_single_runs: bool = Field(
        default=False,
        description="Also record single runs (wtb run) in MLflow, like a batch of one; batches are always recorded.",
    )
    mlflow_tracking_uri: str | None = Field(
        default=None,
        description="MLflow tracking URI; None = MLFLOW_TRACKING_URI, else SQLite at <home>/mlflow.db.",
    )
    trace_console: bool = Field(default=False, description="Print OpenTelemetry spans to stdout.")
    task_run_log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="WARNING",
        description=(
            "Level of Prefect's task-run logger during a batch. WARNING (the default) drops the "
            "'Finished in state Completed()' line of every node, which costs a console line, an API "
            "log and a server write per node; failures and retries are still logged. INFO restores it."
        ),
    )

    @property
    def state_dir(self) -> Path:
        """The absolute state folder, created on first use."""
        path = self.home.expanduser().resolve()
        path.mkdir(parents=True, exist_ok=True)
        return path

    def project_dir(self, project_name: str) -> Path:
        """The state folder of one project (checkpoints, execution index, ...)."""
        path = self.state_dir / "projects" / project_name
        path.mkdir(parents=True, exist_ok=True)
        return path


def get_settings() -> WTBSettings:
    """Read the settings from the environment now."""
    return WTBSettings()
