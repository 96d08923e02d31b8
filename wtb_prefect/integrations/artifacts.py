"""Prefect artifacts of a batch: its summary table and its comparison against the baseline."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prefect.artifacts import create_table_artifact

from wtb_prefect.analysis.comparison import comparison_table, resolve_baseline
from wtb_prefect.batch.gate import artifact_key
from wtb_prefect.batch.observers import BatchObserver, register_observer_factory

if TYPE_CHECKING:
    from wtb_prefect.analysis.batch_result import BatchTestResult
    from wtb_prefect.batch.plan import BatchPlan

__all__ = ["ComparisonArtifactObserver"]


class ComparisonArtifactObserver(BatchObserver):
    """Publishes the batch's summary and its comparison against the first combination as Prefect table artifacts."""

    def on_batch_end(self, plan: BatchPlan, batch: BatchTestResult) -> None:
        create_table_artifact(
            key=artifact_key(plan.project.name, "comparison"),
            table=batch.summary(),
            description=f"Variant comparison of batch {plan.batch_id} ({len(plan.items)} executions)",
        )
        if len(batch.by_variant()) < 2:
            return
        base = resolve_baseline(batch, None)
        create_table_artifact(
            key=artifact_key(plan.project.name, "vs-baseline"),
            table=comparison_table(batch),
            description=f"Batch {batch.batch_id}: each variant combination against {base}, paired by case "
            "(mean difference, 95% paired bootstrap CI, exact McNemar or paired t p-value, Holm-corrected "
            "over the batch's tests, verdict; 'too few cases' below 10 pairs)"
            + (f"; forest plot: {batch.forest_plot}" if batch.forest_plot else ""),
        )
        if batch.pairwise:
            create_table_artifact(
                key=artifact_key(plan.project.name, "pairwise"),
                table=[
                    {
                        "judge": w.judge, "variant": w.variant, "baseline": w.baseline, "cases": w.n,
                        "win_rate": round(w.win_rate, 4), "win_ci": f"{w.win_ci[0]:.2f}-{w.win_ci[1]:.2f}",
                        "tie_rate": round(w.tie_rate, 4), "tie_ci": f"{w.tie_ci[0]:.2f}-{w.tie_ci[1]:.2f}",
                        "loss_rate": round(w.loss_rate, 4), "loss_ci": f"{w.loss_ci[0]:.2f}-{w.loss_ci[1]:.2f}",
                        "p_value": round(w.p_value, 4), "both_orders": w.both_orders, "skipped": w.skipped,
                    }
                    for w in batch.pairwise
                ],
                description=f"Batch {batch.batch_id}: comparative evaluators, each variant against {base} "
                "(win/tie/loss rates with 95% Wilson intervals, sign-test p-value)",
            )


register_observer_factory(lambda plan: ComparisonArtifactObserver())
