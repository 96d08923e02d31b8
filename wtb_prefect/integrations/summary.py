"""At the end of every batch: its HTML report, and a markdown summary artifact in Prefect that links to it.

The summary (artifact key ``wtb-<project>-summary``, on the batch's flow run)
gives the one-glance answer (which variant to pick, and a variants x metrics
table of means with verdict marks), the failures and where the report is. Single runs
(``wtb run``, flow ``wtb-run``) write neither.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from wtb_prefect.analysis.glance import one_glance
from wtb_prefect.analysis.paired import PairedComparison
from wtb_prefect.batch.gate import artifact_key
from wtb_prefect.batch.observers import BatchObserver, register_observer_factory
from wtb_prefect.integrations.previous_run import previous_markdown
from wtb_prefect.integrations.report import error_summary, find_links, verdicts_and_plot, write_report
from wtb_prefect.integrations.scope import is_single_run

if TYPE_CHECKING:
    from wtb_prefect.analysis.batch_result import BatchTestResult
    from wtb_prefect.batch.plan import BatchPlan

__all__ = ["ReportObserver", "summary_markdown"]

logger = logging.getLogger(__name__)

_MAX_FAILURES = 10


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def summary_markdown(
    batch: BatchTestResult, verdicts: list[PairedComparison], report: Path | None, baseline: str
) -> str:
    """The markdown summary of a batch: the one-glance answer, the drift since the previous run, failures, the report.

    The one-glance table (variants x metrics, each mean with its verdict mark,
    see :func:`~wtb_prefect.analysis.glance.one_glance`) keeps one column per
    metric, so it fits the artifact page; every comparison's interval and
    p-values are in the report. ``verdicts`` are the batch's comparisons
    against ``baseline`` (the glance reads the same cached analysis).
    """
    cases = len({r.case_id for r in batch.results})
    lines = [
        f"## {batch.project} · batch {batch.batch_id}",
        "",
        f"{len(batch.by_variant())} variant combinations x {cases} cases · {len(batch.failed)} failed · "
        f"{batch.duration_s:.0f} s · baseline `{baseline}`",
        "",
    ]
    cost = batch.tracking.get("cost") or {}
    if cost.get("spent_usd") or cost.get("saved_usd") or cost.get("budget_usd") is not None:
        budget = f" · budget ${cost['budget_usd']:.4f}: {cost['outcome']}" if cost.get("budget_usd") is not None else ""
        lines += [
            f"cost: spent ${cost['spent_usd']:.4f} · saved ${cost['saved_usd']:.4f} by reused node calls{budget}",
            "",
        ]
    if batch.results:
        lines += [one_glance(batch, baseline).markdown(), ""]
        if verdicts:
            lines += [
                "_Paired by case; verdicts corrected over the batch's tests. Intervals and p-values: the report._",
                "",
            ]
    lines += previous_markdown(batch)
    if batch.failed:
        lines += [f"**Failures** ({len(batch.failed)})", ""]
        by_variant = Counter(r.variant_label for r in batch.failed)
        lines += [
            f"- `{label}`: {count} of {len(batch.by_variant()[label])} cases" for label, count in by_variant.items()
        ]
        for result in batch.failed[:_MAX_FAILURES]:
            error = error_summary(result.error) if result.error else result.status
            lines.append(f"  - `{result.variant_label}` case `{result.case_id}`: {_cell(error)[:300]}")
        lines.append("")
    if report is not None:
        lines += [
            f"**Report**: [{report.name}]({report.as_uri()}) (every case side by side across the variants)",
            "",
            f"Path: `{report}` · again with `wtb report {batch.batch_id} --open`",
        ]
    return "\n".join(lines)


class ReportObserver(BatchObserver):
    """Writes the batch's report and its Prefect summary when the batch ends."""

    batch_end_after = ("MlflowObserver",)  # the report links the batch's MLflow runs

    def on_batch_end(self, plan: BatchPlan, batch: BatchTestResult) -> None:
        if not batch.results or is_single_run():
            return
        analysis = verdicts_and_plot(batch)
        verdicts = analysis[0]
        baseline = verdicts[0].baseline if verdicts else batch.results[0].variant_label
        path: Path | None = None
        try:
            path = write_report(batch, links=find_links(batch), analysis=analysis)
            batch.tracking["report"] = str(path)
        except Exception:  # the summary still goes out, without a report
            logger.exception("the report of batch %s could not be written", batch.batch_id)
        from prefect.artifacts import create_markdown_artifact

        create_markdown_artifact(
            key=artifact_key(batch.project, "summary"),
            markdown=summary_markdown(batch, verdicts, path, baseline),
            description=f"Summary of batch {batch.batch_id}: the variant to pick, verdicts at a glance, failures, report",
        )


register_observer_factory(lambda plan: ReportObserver())
