"""Prefect artifacts of a batch: its summary table and its comparison against the baseline."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prefect.artifacts import create_table_artifact

from wtb_prefect.analysis.comparison import comparison_table, resolve_baseline
from wtb_prefect.batch.gate import artifact_key
from wtb_prefect.batch.observers import BatchObserver, register_observer_factory
from wtb_prefect.services.prefect_outage import best_effort

if TYPE_CHECKING:
    from wtb_prefect.analysis.batch_result import BatchTestResult
    from wtb_prefect.batch.plan import BatchPlan

__all__ = ["ComparisonArtifactObserver"]


class ComparisonArtifactObserver(BatchObserver):
    """Publishes the batch's summary and its comparison against the first combination as Prefect table artifacts."""

    def on_batch_end(self, plan: BatchPlan, batch: BatchTestResult) -> None:
        best_effort(
            "comparison artifact",
            create_table_artifact,
            key=artifact_key(plan.project.name, "comparison"),
            table=batch.summary(),
            description=f"Variant comparison of batch {plan.batch_id} ({len(plan.items)} executions)",
        )
        if len(batch.by_variant()) < 2:
            return
        base = resolve_baseline(batch, None)
        best_effort(
            "comparison artifact",
            create_table_artifact,
            key=artifact_key(plan.project.name, "vs-baseline"),
            table=comparison_table(batch),
            description=f"Batch {batch.batch_id}: each variant combination against {base} "
            "(difference, 95% CI, Welch p-value, significant at 0.05)",
        )


register_observer_factory(lambda plan: ComparisonArtifactObserver())
