"""Prefect artifacts of a batch: its summary table and its comparison against the baseline."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from wtb_prefect.analysis.comparison import comparison_table, resolve_baseline
from wtb_prefect.analysis.paired import interval_label
from wtb_prefect.analysis.stats import mean_ci
from wtb_prefect.batch.gate import artifact_key
from wtb_prefect.batch.observers import BatchObserver, register_observer_factory
from wtb_prefect.integrations.scope import is_single_run
from wtb_prefect.services.prefect_outage import best_effort

if TYPE_CHECKING:
    from wtb_prefect.analysis.batch_result import BatchTestResult
    from wtb_prefect.batch.plan import BatchPlan

__all__ = ["ComparisonArtifactObserver", "compact_comparison", "summary_rows"]


def _interval(value: float | None, low: float | None, high: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.3f}" + (f" [{low:.3f}, {high:.3f}]" if low is not None and high is not None else "")


def _plus_minus(low: float | None, high: float | None, mean: float) -> str:
    return f"{mean:.3f}" if low is None or high is None else f"{mean:.3f} ±{(high - low) / 2:.3f}"


def summary_rows(batch: BatchTestResult) -> list[dict[str, Any]]:
    """One row per variant combination: cases, success rate, run time, each score's mean ± half its 95% CI,
    and how many executions each evaluator that raised could not score.

    One short cell per score (``0.820 ±0.090``), so four scores still fit a 1400 px artifact page.
    """
    rows = []
    scores = sorted({name for r in batch.results for name in r.scores})
    for summary, (label, group) in zip(batch.summary(), batch.by_variant().items(), strict=True):
        row: dict[str, Any] = {"variant": label, "cases": len(group), "success": summary["success_rate"]}
        row["run p50 s"] = summary.get("run_p50_s", summary.get("latency_p50_s"))
        for name in scores:
            values = [r.scores[name] for r in group if name in r.scores]
            ci = mean_ci(values) if values else None
            row[f"{name} ±95%"] = _plus_minus(ci.low, ci.high, ci.mean) if ci else ""
        row.update({key: value for key, value in summary.items() if key.endswith(" errors")})  # evaluator errors
        rows.append(row)
    return rows


def compact_comparison(batch: BatchTestResult) -> list[dict[str, Any]]:
    """The comparison against the baseline in five short columns, so it fits a 1400 px artifact page.

    The means of each side are in the summary's one-glance table; the pairs, means and tests in the report.
    """
    table = comparison_table(batch)
    heading = f"difference ({interval_label(row['confidence'] for row in table)})"
    rows = []
    for row in table:
        difference = _interval(row["difference"], row["ci_low"], row["ci_high"])
        rows.append(
            {
                "variant": row["variant"],
                "metric": row["metric"],
                "verdict": row["verdict"],
                heading: difference,
                "p (Holm)": row["p_adjusted"],
            }
        )
    return rows


class ComparisonArtifactObserver(BatchObserver):
    """Publishes the batch's summary and its comparison against the first combination as Prefect table artifacts.

    Single runs (flow ``wtb-run``) publish neither: the project's comparison
    artifact keeps the history of its batches only.
    """

    def on_batch_end(self, plan: BatchPlan, batch: BatchTestResult) -> None:
        if is_single_run():
            return
        best_effort(
            "comparison artifact",
            create_table_artifact,
            key=artifact_key(plan.project.name, "comparison"),
            table=summary_rows(batch),
            description=f"Variant comparison of batch {plan.batch_id} ({len(plan.items)} executions): "
            "success rate, the nodes' median run time, each score's mean ± half its 95% interval",
        )
        calls = batch.tracking.get("node_calls")
        if calls:
            create_markdown_artifact(
                key=artifact_key(plan.project.name, "node-calls"),
                markdown=node_calls_markdown(plan.batch_id, calls),
                description=f"Batch {plan.batch_id}: node calls computed vs reused, node time saved",
            )
        if len(batch.by_variant()) < 2:
            return
        base = resolve_baseline(batch, None)
        best_effort(
            "comparison artifact",
            create_table_artifact,
            key=artifact_key(plan.project.name, "vs-baseline"),
            table=compact_comparison(batch),
            description=f"Batch {batch.batch_id}: each variant combination against {base}, paired by case "
            "(mean difference with its interval at the level the correction implies, exact McNemar or paired t p-value, Holm-corrected "
            "over the batch's tests, verdict; 'too few cases' below 10 pairs)"
            + (f"; forest plot: {batch.forest_plot}" if batch.forest_plot else ""),
        )
        if batch.pairwise:
            create_table_artifact(
                key=artifact_key(plan.project.name, "pairwise"),
                table=[
                    {
                        "judge": w.judge,
                        "variant": w.variant,
                        "baseline": w.baseline,
                        "cases": w.n,
                        "win_rate": round(w.win_rate, 4),
                        "win_ci": f"{w.win_ci[0]:.2f}-{w.win_ci[1]:.2f}",
                        "tie_rate": round(w.tie_rate, 4),
                        "tie_ci": f"{w.tie_ci[0]:.2f}-{w.tie_ci[1]:.2f}",
                        "loss_rate": round(w.loss_rate, 4),
                        "loss_ci": f"{w.loss_ci[0]:.2f}-{w.loss_ci[1]:.2f}",
                        "p_value": round(w.p_value, 4),
                        "both_orders": w.both_orders,
                        "skipped": w.skipped,
                    }
                    for w in batch.pairwise
                ],
                description=f"Batch {batch.batch_id}: comparative evaluators, each variant against {base} "
                "(win/tie/loss rates with 95% Wilson intervals, sign-test p-value)",
            )


def node_calls_markdown(batch_id: str, calls: dict) -> str:
    """The node-call report of a batch (``BatchTestResult.tracking["node_calls"]``) as Markdown."""
    lines = [
        f"# Node calls of batch {batch_id}",
        "",
        "| computed | reused | shared within the batch | from the node-call cache | node time saved (s) |",
        "|---:|---:|---:|---:|---:|",
        f"| {calls['computed']} | {calls['reused']} | {calls['shared']} | {calls['cached']} | {calls['time_saved_s']} |",
    ]
    lines += ["", *[f"- {error}" for error in calls.get("uncacheable", [])]]
    if calls.get("lanes"):
        lines += ["", "| node | I/O lane | Ray tasks | rate-limit answers absorbed | why |", "|---|---:|---:|---:|---|"]
        lines += [
            f"| {node} | {row['io']} | {row['task']} | {row['rate_limited']} | {row['reason']} |"
            for node, row in calls["lanes"].items()
        ]
    return "\n".join(lines)


register_observer_factory(lambda plan: ComparisonArtifactObserver())
