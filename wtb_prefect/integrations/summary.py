"""At the end of every batch: its HTML report, and a markdown summary artifact in Prefect that links to it.

The summary (artifact key ``wtb-<project>-summary``, on the batch's flow run)
gives the verdicts of each variant combination against the baseline, the best
variant per metric, the failures and where the report is. Single runs
(``wtb run``, flow ``wtb-run``) write neither.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from wtb_prefect.analysis.evaluation import lower_is_better
from wtb_prefect.batch.gate import artifact_key
from wtb_prefect.batch.observers import BatchObserver, register_observer_factory
from wtb_prefect.integrations.previous_run import previous_markdown
from wtb_prefect.integrations.report import Verdict, analyse, error_summary, find_links, write_report
from wtb_prefect.integrations.scope import is_single_run

if TYPE_CHECKING:
    from wtb_prefect.analysis.batch_result import BatchTestResult
    from wtb_prefect.batch.plan import BatchPlan

__all__ = ["ReportObserver", "best_variants", "summary_markdown"]

logger = logging.getLogger(__name__)

_SYMBOLS = {
    "better": "▲ better",
    "worse": "▼ worse",
    "no detectable difference": "= no difference",
    "too few cases": "too few cases",
}
_MAX_FAILURES = 10


def best_variants(verdicts: list[Verdict]) -> dict[str, tuple[str, float]]:
    """Per metric, the combination (the baseline included) with the best mean, and that mean."""
    best: dict[str, tuple[str, float]] = {}
    for metric in dict.fromkeys(v.metric for v in verdicts):
        rows = [v for v in verdicts if v.metric == metric]
        candidates = [(rows[0].baseline, rows[0].baseline_value)] + [(v.variant, v.value) for v in rows]
        scored = [(label, value) for label, value in candidates if value is not None]
        if scored:
            pick = min if lower_is_better(metric) else max
            best[metric] = pick(scored, key=lambda item: item[1])
    return best


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def summary_markdown(batch: BatchTestResult, verdicts: list[Verdict], report: Path | None, baseline: str) -> str:
    """The markdown summary of a batch: verdicts, best variant per metric, failures, the report."""
    cases = len({r.case_id for r in batch.results})
    lines = [
        f"## {batch.project} · batch {batch.batch_id}",
        "",
        f"{len(batch.by_variant())} variant combinations x {cases} cases · {len(batch.failed)} failed · "
        f"{batch.duration_s:.0f} s · baseline `{baseline}`",
        "",
    ]
    best = best_variants(verdicts)
    if best:
        lines += ["**Best variant per metric**", "", "| metric | best | mean |", "|---|---|---|"]
        lines += [f"| {_cell(m)} | **{_cell(label)}** | {value:.3f} |" for m, (label, value) in best.items()]
        lines.append("")
    metrics = list(dict.fromkeys(v.metric for v in verdicts))
    variants = list(dict.fromkeys(v.variant for v in verdicts))
    if verdicts:
        lines += [f"**Against `{baseline}`** (paired by case; verdicts corrected over the batch's tests)", ""]
        lines += ["| variant | " + " | ".join(_cell(m) for m in metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
        for variant in variants:
            cells = []
            for metric in metrics:
                v = next((x for x in verdicts if x.variant == variant and x.metric == metric), None)
                if v is None:
                    cells.append("")
                    continue
                change = "" if v.difference is None else f" {v.difference:+.3f}"
                cells.append(_SYMBOLS.get(v.verdict, v.verdict) + change)
            lines.append(f"| {_cell(variant)} | " + " | ".join(cells) + " |")
        lines.append("")
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
        analysis = analyse(batch)
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
            description=f"Summary of batch {batch.batch_id}: verdicts, best variant per metric, failures, report",
        )


register_observer_factory(lambda plan: ReportObserver())
