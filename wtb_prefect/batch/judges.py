"""Comparative (pairwise) evaluators, run when a batch's executions are done.

Each judge registered with ``project.register_comparative_evaluator`` sees,
for every variant other than the baseline and every case both completed,
``fn(variant_state, baseline_state, test_case)``; with ``both_orders`` also
``fn(baseline_state, variant_state, test_case)``, whose answer counts for the
variant with its sign flipped. Repetition r of a variant is judged against
repetition r of the baseline. The scores become win/tie/loss rates
(:func:`wtb_prefect.analysis.paired.win_tie_loss`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from wtb_prefect.analysis.paired import WinTieLoss, win_tie_loss

if TYPE_CHECKING:
    from wtb_prefect.analysis.batch_result import BatchTestResult
    from wtb_prefect.define.project import ComparativeEvaluator
    from wtb_prefect.results import ExecutionResult

__all__ = ["judge_batch"]

logger = logging.getLogger(__name__)


def _ask(judge: ComparativeEvaluator, a: Any, b: Any, case: dict[str, Any]) -> float | None:
    try:
        score = float(judge.fn(a, b, dict(case)))
    except Exception:
        logger.warning("comparative evaluator %r failed on case %r", judge.name, case.get("case_id"), exc_info=True)
        return None
    if not math.isfinite(score) or abs(score) > 1:
        logger.warning("comparative evaluator %r answered %r, outside [-1, 1]: case left out", judge.name, score)
        return None
    return score


def _judge_pair(
    judge: ComparativeEvaluator, variant: ExecutionResult, base: ExecutionResult, case: dict
) -> list[float] | None:
    first = _ask(judge, variant.final_state, base.final_state, case)
    if first is None:
        return None
    if not judge.both_orders:
        return [first]
    second = _ask(judge, base.final_state, variant.final_state, case)
    return None if second is None else [first, -second]


def judge_batch(
    judges: Mapping[str, ComparativeEvaluator],
    batch: BatchTestResult,
    baseline: str,
    raw_cases: Mapping[str, Mapping[str, Any]],
    concurrency: int = 1,
) -> list[WinTieLoss]:
    """Every judge's win/tie/loss of every variant against ``baseline`` (variants in matrix order).

    ``raw_cases`` maps a case id to the test case the judge is given. Judge
    calls run ``concurrency`` at once; a call that fails or answers outside
    [-1, 1] leaves its case out (counted in ``skipped`` and logged).
    """
    groups = batch.by_variant()
    if not judges or baseline not in groups or len(groups) < 2:
        return []
    base = {(r.case_id, r.repetition): r for r in groups[baseline] if r.ok}
    out: list[WinTieLoss] = []
    with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="wtb-judge") as pool:
        for judge in judges.values():
            for label, results in groups.items():
                if label == baseline:
                    continue
                pairs = [(r, base.get((r.case_id, r.repetition))) for r in results]
                ready = [(r, b) for r, b in pairs if r.ok and b is not None]
                futures = [
                    (r.case_id, pool.submit(_judge_pair, judge, r, b, dict(raw_cases.get(r.case_id, {}))))
                    for r, b in ready
                ]
                scores: dict[str, list[float]] = {}
                skipped = len(pairs) - len(ready)
                for case_id, future in futures:
                    answer = future.result()
                    if answer is None:
                        skipped += 1
                    else:
                        scores.setdefault(case_id, []).extend(answer)
                if not scores:
                    logger.warning("comparative evaluator %r judged no case of %s", judge.name, label)
                    continue
                out.append(
                    win_tie_loss(
                        scores,
                        variant=label,
                        baseline=baseline,
                        judge=judge.name,
                        both_orders=judge.both_orders,
                        skipped=skipped,
                    )
                )
    return out
