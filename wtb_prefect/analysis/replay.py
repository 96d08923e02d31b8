"""Replaying a race over a recorded full matrix: what racing would have decided, and at what cost.

A finished batch (or a synthetic matrix) holds every variant's value on every
case. :func:`replay_race` runs a :class:`~wtb_prefect.analysis.racing.Race`
over it many times, each replay with a new seeded case order, without a live
call, and compares each race's decision with the full matrix's: the same best
variant within ``epsilon`` (goal ``best``), or verdicts against the baseline
that the full matrix's differences bear out (goal ``baseline``); and how many
node calls (variant-case runs) each race needed. :func:`replay_repetitions`
does the same for sequential repetitions of cells against a pass-rate
threshold. :func:`matrix_from_results` builds the matrix from a batch's
per-case results, so a user can ask how much racing would have saved on a
batch already run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from wtb_prefect.analysis.racing import Race, RacePolicy
from wtb_prefect.analysis.sequential import SequentialPassRate
from wtb_prefect.analysis.verdicts import metric_by_case
from wtb_prefect.errors import ConfigError

if TYPE_CHECKING:
    from wtb_prefect.results import ExecutionResult

__all__ = [
    "RepetitionReplay",
    "ReplayReport",
    "case_orders",
    "matrix_from_results",
    "replay_race",
    "replay_repetitions",
]


def case_orders(cases: int, replays: int, seed: int) -> np.ndarray:
    """``replays`` seeded random orders of ``cases`` cases, ``(replays, cases)``; row 0 is the live race's order."""
    rng = np.random.default_rng(seed)
    return np.argsort(rng.random((replays, cases)), axis=1)


def _quantiles(x: np.ndarray) -> dict[str, float]:
    if x.size == 0:
        return {}
    q = np.quantile(x, [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0])
    return dict(zip(("min", "p10", "p25", "median", "p75", "p90", "max"), (float(v) for v in q), strict=True))


@dataclass
class ReplayReport:
    """What the replays of a race decided against the full matrix, and what they cost.

    ``agreement`` is the share of replays whose decision the full matrix bears
    out; ``call_fraction`` each replay's node calls over the full matrix's;
    ``claims`` the share of replays that claimed some variant better or worse
    than another; ``decided`` the share that met their goal before the cases
    ran out; ``cases_run`` per replay and variant.
    """

    variants: list[str]
    full_best: int
    full_means: np.ndarray
    agreement: float
    call_fraction: np.ndarray
    claims: float
    decided: float
    picked: np.ndarray
    cases_run: np.ndarray
    agrees: np.ndarray = field(repr=False)

    @property
    def median_call_fraction(self) -> float:
        """The median share of the full matrix's node calls a replay needed."""
        return float(np.median(self.call_fraction))

    def call_distribution(self) -> dict[str, float]:
        """Quantiles of the call fraction over the replays."""
        return _quantiles(self.call_fraction)

    def dropped_after(self) -> dict[str, dict[str, float]]:
        """Per variant, quantiles of the cases it ran."""
        return {name: _quantiles(self.cases_run[:, v].astype(float)) for v, name in enumerate(self.variants)}


def _case_values(matrix: np.ndarray) -> np.ndarray:
    values = np.asarray(matrix, dtype=float)
    if values.ndim == 3:  # repetitions are averaged per case, as the paired analysis does
        values = np.nanmean(values, axis=2)
    if values.ndim != 2:
        raise ConfigError("matrix", f"has {values.ndim} dimensions", "give variants x cases [x repetitions]")
    return values


def replay_race(
    matrix: np.ndarray,
    policy: RacePolicy,
    *,
    replays: int = 500,
    seed: int = 0,
    variants: Sequence[str] | None = None,
    max_cases: int | None = None,
) -> ReplayReport:
    """Run ``replays`` races over a recorded ``matrix`` (variants x cases [x repetitions]), each in a new order.

    All replays advance together, one case per round, so the cost is a few
    array operations per case whatever the number of replays.
    """
    values = _case_values(matrix)
    k, n = values.shape
    names = list(variants) if variants is not None else [f"v{i}" for i in range(k)]
    race = Race(names, policy, replays)
    orders = case_orders(n, replays, seed)
    cap = n if max_cases is None else min(n, max_cases)
    for t in range(cap):
        if race.finished.all():
            break
        race.observe(values[:, orders[:, t]].T)
        race.decide()
    race.stop()
    sign = 1.0 if policy.higher_is_better else -1.0
    full = sign * np.nanmean(values, axis=1)
    full_best = int(np.argmax(full))
    picked = race.picked()
    if policy.goal == "best":
        agrees = full[picked] >= full[full_best] - policy.epsilon - 1e-12
        decided = race.alive.sum(axis=1) <= 1
    else:
        agrees = _baseline_agreement(race, full, policy)
        decided = ~np.delete(race.reason == 0, policy.baseline, axis=1).any(axis=1)
    return ReplayReport(
        variants=names,
        full_best=full_best,
        full_means=sign * full,
        agreement=float(agrees.mean()),
        call_fraction=race.cases.sum(axis=1) / (k * n),
        claims=float(race.claims().mean()),
        decided=float(decided.mean()),
        picked=picked,
        cases_run=race.cases,
        agrees=agrees,
    )


def _baseline_agreement(race: Race, full: np.ndarray, policy: RacePolicy) -> np.ndarray:
    """Per replay: does every decided verdict against the baseline match the full matrix's difference?"""
    diff = full - full[policy.baseline]
    eps = policy.epsilon
    ok = np.ones(race.replays, dtype=bool)
    for v in range(race.k):
        reason = race.reason[:, v]
        bad = (reason == 3) & (diff[v] <= 0)  # better
        bad |= (reason == 2) & (diff[v] >= 0)  # worse
        bad |= (reason == 4) & (abs(diff[v]) > eps)  # within epsilon
        ok &= ~bad
    return ok


@dataclass
class RepetitionReplay:
    """Sequential repetitions replayed over recorded cells against their full repetitions.

    ``agreement`` is the share of decided cells whose verdict matches the
    full repetitions' rate against the threshold; ``repetition_fraction`` the
    repetitions used over the full number; ``verdicts`` is ``(replays, cells)``.
    """

    verdicts: np.ndarray
    full_pass: np.ndarray
    agreement: float
    decided: float
    repetition_fraction: float
    repetitions: np.ndarray


def replay_repetitions(
    outcomes: np.ndarray,
    threshold: float,
    *,
    alpha: float = 0.05,
    margin: float = 0.0,
    replays: int = 500,
    seed: int = 0,
) -> RepetitionReplay:
    """Replay sequential repetitions over recorded 0/1 ``outcomes`` (cells x repetitions).

    Each replay takes each cell's recorded repetitions in a new order and
    stops a cell once :class:`~wtb_prefect.analysis.sequential.SequentialPassRate`
    decides it. The full verdict of a cell is its recorded rate >= ``threshold``.
    """
    data = np.asarray(outcomes, dtype=float)
    if data.ndim != 2:
        raise ConfigError("outcomes", f"has {data.ndim} dimensions", "give cells x repetitions")
    cells, reps = data.shape
    rng = np.random.default_rng(seed)
    orders = np.argsort(rng.random((replays, cells, reps)), axis=2)
    shuffled = np.take_along_axis(np.broadcast_to(data, (replays, cells, reps)), orders, axis=2)
    test = SequentialPassRate((replays, cells), threshold, reps, alpha, margin)
    for r in range(reps):
        test.update(shuffled[:, :, r])
    verdicts = test.verdicts()
    full_pass = data.mean(axis=1) >= threshold
    decided = (verdicts == "pass") | (verdicts == "fail")
    matches = (verdicts == "pass") == full_pass[None, :]
    agreement = float(matches[decided].mean()) if decided.any() else float("nan")
    return RepetitionReplay(
        verdicts=verdicts,
        full_pass=full_pass,
        agreement=agreement,
        decided=float(decided.mean()),
        repetition_fraction=float(test.repetitions.sum() / (replays * cells * reps)),
        repetitions=test.repetitions,
    )


def matrix_from_results(
    results: Sequence[ExecutionResult], metric: str = "success"
) -> tuple[list[str], list[str], np.ndarray]:
    """A finished batch's per-case values of ``metric``: (variant labels, case ids, variants x cases).

    Repetitions are averaged per case; a case a variant has no value for is NaN.
    """
    by_variant = metric_by_case(results, metric)
    variants = list(by_variant)
    cases = sorted({c for v in by_variant.values() for c in v})
    matrix = np.full((len(variants), len(cases)), np.nan)
    for v, name in enumerate(variants):
        for c, case in enumerate(cases):
            values = by_variant[name].get(case)
            if values:
                matrix[v, c] = float(np.mean(values))
    return variants, cases, matrix
