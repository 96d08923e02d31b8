"""Running a batch as a race: cases round by round, decided variants dropped, cells repeated until decided.

``run_batch_test(..., race=RaceConfig(...))`` (YAML/CLI/flow parameter ``race``)
goes through :func:`prepare_race` with the plan, before any work starts. The
batch then runs through :func:`run_race` instead of all at once:

- the cases are taken in an order seeded by ``RaceConfig.seed`` (capped at
  ``max_cases``), a round of cases at a time, every surviving variant on the
  same cases (paired, so shared upstream node calls stay shared);
- after each round the :class:`~wtb_prefect.analysis.racing.Race` decides which
  variants stop; a dropped variant starts no further execution, so no further
  node call (a round ends only when its executions have, so nothing of a
  dropped variant is in flight);
- with ``repetition_threshold``, the batch's ``repetitions`` is a maximum: a
  round runs repetition 0 of its cells, then repetition 1 of the cells still
  undecided (:class:`~wtb_prefect.analysis.sequential.SequentialPassRate`), and
  so on; the repetition index is part of every node call's key, so a
  repetition never reuses another's call.

The race's settings are stored beside the execution index, so a resumed batch
replays the stored results through the same decisions and goes on where the
race stopped. The outcome (each variant's verdict, how it was reached, and the
cost against the full matrix's) lands in ``BatchTestResult.tracking["race"]``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from wtb_prefect.analysis.comparison import METRIC_ALIASES
from wtb_prefect.analysis.evaluation import is_latency, lower_is_better
from wtb_prefect.analysis.race_plot import difference_sequences
from wtb_prefect.analysis.racing import Race, RacePolicy
from wtb_prefect.analysis.replay import case_orders
from wtb_prefect.analysis.sequential import SequentialPassRate
from wtb_prefect.config import RaceConfig
from wtb_prefect.errors import ConfigError

if TYPE_CHECKING:
    from wtb_prefect.results import ExecutionResult
    from wtb_prefect.run.execution import ExecutionItem

__all__ = ["BatchRace", "load_race", "prepare_race", "run_race", "save_race"]

_BOUNDED = ("success", "error")

RunItems = Callable[[list[tuple[int, "ExecutionItem"]]], list[tuple[int, "ExecutionResult"]]]
"""Runs (or returns the stored results of) ``(position, item)`` pairs; returns ``(position, result)`` pairs."""


@dataclass
class BatchRace:
    """A validated race of one batch: its settings, the case order and the round size."""

    config: RaceConfig
    policy: RacePolicy
    metric: str
    labels: list[str]
    order: list[int]
    cases_per_round: int
    outcome: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """What :func:`save_race` stores for a resume."""
        return {"config": self.config.model_dump(), "cases_per_round": self.cases_per_round}


def _race_config(race: RaceConfig | Mapping[str, Any]) -> RaceConfig:
    if isinstance(race, RaceConfig):
        return race
    if not isinstance(race, Mapping):
        raise ConfigError("race", f"is {race!r}", "give RaceConfig(...) or a dict of its fields")
    try:
        return RaceConfig(**dict(race))
    except TypeError as exc:  # not keyword names
        raise ConfigError("race", str(exc), "give a dict of RaceConfig fields") from None


def prepare_race(
    race: RaceConfig | Mapping[str, Any] | None,
    *,
    labels: Sequence[str],
    evaluators: Sequence[str],
    cases: int,
    repetitions: int,
    concurrency: int,
    cases_per_round: int | None = None,
) -> BatchRace | None:
    """Validate a batch's race before any work starts; None without one.

    Raises:
        ConfigError: a bad setting, a single variant, an unknown primary metric
            or baseline, or sequential repetitions without a 0/1 metric.
    """
    if race is None:
        return None
    config = _race_config(race)
    if len(labels) < 2:
        raise ConfigError(
            "race", f"has {len(labels)} variant combination(s) to race", "give a variant matrix of two or more"
        )
    metric = METRIC_ALIASES.get(config.primary_metric, config.primary_metric)
    known = (
        metric in _BOUNDED
        or is_latency(metric)
        or metric.startswith(("node.", "total."))
        or any(metric == e or metric.startswith(f"{e}.") for e in evaluators)
    )
    if not known:
        raise ConfigError(
            "race.primary_metric",
            f"{config.primary_metric!r} is not a metric of this project",
            f"use success, error, run_s, latency_s or an evaluator ({list(evaluators)})",
        )
    baseline = 0
    if config.baseline is not None:
        if config.baseline not in labels:
            raise ConfigError(
                "race.baseline", f"{config.baseline!r} is not in the variant matrix", f"use one of {list(labels)}"
            )
        baseline = list(labels).index(config.baseline)
    # A 0/1 metric and evaluator scores are raced as values in [0, 1] with betting tests; timings
    # and node metrics have no known range and use the asymptotic confidence sequence.
    bounds = None if is_latency(metric) or metric.startswith(("node.", "total.")) else (0.0, 1.0)
    if config.repetition_threshold is not None and bounds is None:
        raise ConfigError(
            "race.repetition_threshold",
            f"needs a pass/fail primary metric, not {metric!r}",
            "race on success or a 0/1 evaluator, or leave repetition_threshold unset",
        )
    policy = RacePolicy(
        goal=config.goal,
        alpha=config.alpha,
        epsilon=config.epsilon,
        min_cases=config.min_cases,
        bounds=bounds,
        higher_is_better=not lower_is_better(metric),
        baseline=baseline,
    )
    Race(list(labels), policy)  # validates the policy against the matrix
    n = min(cases, config.max_cases or cases)
    order = [int(i) for i in case_orders(cases, 1, config.seed)[0][:n]]
    per_round = cases_per_round or max(1, math.ceil(concurrency / (len(labels) * max(1, repetitions))))
    return BatchRace(config, policy, metric, list(labels), order, per_round)


def _race_path(state_dir: Path, batch_id: str) -> Path:
    return Path(state_dir) / "races" / f"{batch_id}.json"


def save_race(state_dir: Path, batch_id: str, race: BatchRace) -> None:
    """Store a race's settings so that resuming its batch replays the same decisions."""
    path = _race_path(state_dir, batch_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(race.as_json()))


def load_race(state_dir: Path, batch_id: str) -> tuple[RaceConfig, int] | None:
    """The stored race of batch ``batch_id`` (its config and round size), or None if it was not a race."""
    path = _race_path(state_dir, batch_id)
    if not path.exists():
        return None
    stored = json.loads(path.read_text())
    return RaceConfig(**stored["config"]), int(stored["cases_per_round"])


def _value(result: ExecutionResult, metric: str) -> float:
    if result.status not in ("completed", "failed"):
        return math.nan
    if metric not in _BOUNDED and result.status != "completed":
        return math.nan
    value = result.metrics.get(metric)
    return math.nan if value is None else float(value)


def run_race(
    race: BatchRace,
    items: Sequence[ExecutionItem],
    variant_of: Mapping[str, int],
    case_of: Mapping[str, int],
    repetitions: int,
    run_items: RunItems,
) -> None:
    """Run the race over the plan's ``items``: round by round, only what is still undecided.

    ``variant_of`` and ``case_of`` map an execution id to its variant and case
    index. Fills ``race.outcome`` (see :func:`race_outcome`).
    """
    k = len(race.labels)
    cases = max(case_of.values()) + 1 if case_of else 0
    index: dict[tuple[int, int, int], tuple[int, ExecutionItem]] = {}
    for position, item in enumerate(items):
        index[(variant_of[item.execution_id], case_of[item.execution_id], item.repetition)] = (position, item)
    state = Race(race.labels, race.policy)
    sequential = None
    if race.config.repetition_threshold is not None and repetitions > 1:
        sequential = SequentialPassRate(
            (k, cases), race.config.repetition_threshold, repetitions, race.config.alpha, race.config.repetition_margin
        )
    values = np.full((k, cases, repetitions), np.nan)
    ran: list[ExecutionResult] = []
    rounds: list[dict[str, Any]] = []
    for start in range(0, len(race.order), race.cases_per_round):
        if state.finished.all():
            break
        chosen = race.order[start : start + race.cases_per_round]
        alive = np.flatnonzero(state.alive[0])
        for rep in range(repetitions):
            if sequential is None and rep > 0:
                break  # without sequential repetitions every repetition runs in the first pass
            reps = range(repetitions) if sequential is None else [rep]
            cells = [
                (v, c, r) for c in chosen for v in alive for r in reps if sequential is None or sequential.running[v, c]
            ]
            if not cells:
                break
            for position, result in run_items([index[cell] for cell in cells]):
                v, c, r = variant_of[result.execution_id], case_of[result.execution_id], items[position].repetition
                values[v, c, r] = _value(result, race.metric)
                ran.append(result)
            if sequential is not None:
                outcome = np.full((k, cases), np.nan)
                active = np.zeros((k, cases), dtype=bool)
                for v, c, r in cells:
                    outcome[v, c], active[v, c] = values[v, c, r], True
                sequential.update(outcome, active)
        before = state.alive[0].copy()
        for c in chosen:
            seen = ~np.isnan(values[:, c, :])
            total = np.where(seen, values[:, c, :], 0.0).sum(axis=1)
            per_case = np.where(seen.any(axis=1), total / np.maximum(seen.sum(axis=1), 1), np.nan)
            state.observe(np.where(state.alive[0], per_case, np.nan))
        state.decide()
        dropped = [race.labels[v] for v in np.flatnonzero(before & ~state.alive[0])]
        rounds.append({"cases": len(chosen), "dropped": dropped})
    state.stop()
    race.outcome = race_outcome(race, state, sequential, rounds, ran, repetitions, cases)
    race.outcome["sequences"] = _sequences(race, values)


def _sequences(race: BatchRace, values: np.ndarray) -> list[dict[str, Any]]:
    """The race's confidence sequences against its baseline, for its plot (see :mod:`wtb_prefect.analysis.race_plot`)."""
    seen = ~np.isnan(values)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_case = np.where(seen.any(axis=2), np.where(seen, values, 0.0).sum(axis=2) / seen.sum(axis=2), np.nan)
    return difference_sequences(
        per_case, race.order, race.labels, race.policy.baseline, race.policy.bounds, race.config.alpha
    )


def race_outcome(
    race: BatchRace,
    state: Race,
    sequential: SequentialPassRate | None,
    rounds: list[dict[str, Any]],
    ran: Sequence[ExecutionResult],
    repetitions: int,
    cases: int,
) -> dict[str, Any]:
    """The race's record: verdicts, how they were reached, and its cost against the full matrix's.

    The full matrix's cost is estimated from each variant's own mean cost per
    execution of this race, times every case and repetition.
    """
    calls = {label: 0 for label in race.labels}
    seconds = dict.fromkeys(race.labels, 0.0)
    dollars = dict.fromkeys(race.labels, 0.0)
    executions = dict.fromkeys(race.labels, 0)
    priced = False
    for result in ran:
        label = result.variant_label
        executions[label] += 1
        calls[label] += len(result.nodes)
        seconds[label] += sum(record.own_time_s for record in result.nodes)
        for record in result.nodes:
            dollars[label] += float(record.cost_usd)  # a reused call costs nothing here
            priced = priced or bool(record.usage or record.saved_usage)  # a model call was booked
    full_executions = cases * repetitions

    def full(per_variant: Mapping[str, float]) -> float:
        return sum(per_variant[lb] / executions[lb] * full_executions for lb in race.labels if executions[lb])

    cost = {
        "executions": sum(executions.values()),
        "full_executions": full_executions * len(race.labels),
        "node_calls": sum(calls.values()),
        "full_node_calls": round(full(calls)),
        "node_seconds": round(sum(seconds.values()), 3),
        "full_node_seconds": round(full(seconds), 3),
    }
    if priced:
        cost["dollars"] = round(sum(dollars.values()), 6)
        cost["full_dollars"] = round(full(dollars), 6)
    verdicts = [v.as_dict() | {"node_calls": calls[v.variant]} for v in state.verdicts()]
    outcome: dict[str, Any] = {
        "goal": race.config.goal,
        "primary_metric": race.metric,
        "alpha": race.config.alpha,
        "epsilon": race.config.epsilon,
        "kind": "anytime-valid",
        "decided": bool(state.alive[0].sum() <= 1) if race.config.goal == "best" else bool(state.finished[0]),
        "cases_in_order": len(race.order),
        "order": list(race.order),
        "rounds": rounds,
        "verdicts": verdicts,
        "cost": cost,
    }
    if sequential is not None:
        labels = sequential.verdicts()
        outcome["cells"] = {
            name: {str(c): str(labels[v, c]) for c in range(cases) if sequential.repetitions[v, c] > 0}
            for v, name in enumerate(race.labels)
        }
    return outcome
