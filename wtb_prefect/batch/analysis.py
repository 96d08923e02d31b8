"""What a batch adds to its results once its executions are done: the judges, the forest and race plots.

:func:`analyse_finished_batch` runs the project's comparative evaluators
(:mod:`wtb_prefect.batch.judges`) against the baseline (the first combination
of the matrix, as in the batch's comparison tables) and saves the forest plot of the paired analysis
as ``<state>/projects/<project>/batches/<batch id>/forest.png``
(:attr:`BatchTestResult.forest_plot`); a raced batch also gets ``race.png``
beside it (its path in ``tracking["race"]["plot"]``). None can fail the batch: a problem
is logged and the batch keeps its results.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from wtb_prefect.analysis.comparison import resolve_baseline
from wtb_prefect.batch.judges import judge_batch
from wtb_prefect.settings import get_settings

if TYPE_CHECKING:
    from wtb_prefect.analysis.batch_result import BatchTestResult
    from wtb_prefect.batch.plan import BatchPlan

__all__ = ["analyse_finished_batch", "forest_plot_path"]

logger = logging.getLogger(__name__)


def forest_plot_path(project: str, batch_id: str) -> Path:
    """Where a batch's forest plot is saved, under the project's state folder."""
    return get_settings().project_dir(project) / "batches" / batch_id / "forest.png"


def analyse_finished_batch(plan: BatchPlan, batch: BatchTestResult) -> None:
    """Judge the variants pairwise and save the forest plot, in place on ``batch``."""
    if len(batch.by_variant()) < 2:
        return
    baseline = resolve_baseline(batch, None)
    if plan.project.comparative_evaluators:
        raw_cases = {item.case.case_id: item.raw_case for item in plan.items}
        try:
            batch.pairwise = judge_batch(
                plan.project.comparative_evaluators, batch, baseline, raw_cases, plan.concurrency
            )
        except Exception:
            logger.warning("comparative evaluators of batch %s failed", batch.batch_id, exc_info=True)
    try:
        from wtb_prefect.analysis.forest import forest_plot

        analysis = batch.analysis(baseline)
        if analysis.comparisons:
            path = forest_plot(
                analysis.comparisons,
                forest_plot_path(plan.project.name, batch.batch_id),
                title=f"{plan.project.name} batch {batch.batch_id}: each variant minus {baseline} ({analysis.interval})",
            )
            batch.forest_plot = str(path)
    except Exception:
        logger.warning("no forest plot for batch %s", batch.batch_id, exc_info=True)
    race = batch.tracking.get("race")
    if isinstance(race, dict) and race.get("sequences"):
        try:
            from wtb_prefect.analysis.race_plot import race_plot

            dropped = {v["variant"]: v.get("dropped_after") for v in race.get("verdicts", [])}
            path = race_plot(
                race["sequences"],
                forest_plot_path(plan.project.name, batch.batch_id).with_name("race.png"),
                metric=race["primary_metric"],
                epsilon=float(race.get("epsilon") or 0.0),
                dropped_after=dropped,
                title=f"{plan.project.name} batch {batch.batch_id}: race on {race['primary_metric']}, "
                f"each variant minus {race['sequences'][0]['against']} (confidence sequences, alpha {race['alpha']:g})",
            )
            race["plot"] = str(path)
        except ValueError:
            pass  # no variant ran a case beside the baseline: nothing to draw
        except Exception:
            logger.warning("no race plot for batch %s", batch.batch_id, exc_info=True)
