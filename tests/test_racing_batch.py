"""The batch side of racing without services: validation, rounds, drops, sequential repetitions, resume.

:func:`wtb_prefect.batch.race.run_race` is driven with a stand-in for running
executions (a recorded matrix of outcomes), so what it asks to run, and in what
order, is checked exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from scipy.special import expit

from wtb_prefect.batch.race import load_race, prepare_race, run_race, save_race
from wtb_prefect.config import RaceConfig
from wtb_prefect.errors import ConfigError
from wtb_prefect.results import ExecutionResult, NodeRecord


@dataclass
class _Item:
    execution_id: str
    repetition: int = 0


def _matrix(seed: int, skills: list[float], cases: int, reps: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    d = rng.normal(size=cases)
    p = expit(6 * (np.asarray(skills)[:, None, None] - d[None, :, None]))
    return (rng.random((len(skills), cases, reps)) < p).astype(float)


class _Recorded:
    """Runs nothing: answers each execution from a recorded matrix, and logs what it was asked."""

    def __init__(self, outcomes: np.ndarray, labels: list[str]) -> None:
        self.outcomes, self.labels = outcomes, labels
        self.asked: list[list[str]] = []
        k, n, reps = outcomes.shape
        self.items = [_Item(f"v{v}-c{c}-r{r}", r) for c in range(n) for v in range(k) for r in range(reps)]
        self.variant_of = {i.execution_id: int(i.execution_id.split("-")[0][1:]) for i in self.items}
        self.case_of = {i.execution_id: int(i.execution_id.split("-")[1][1:]) for i in self.items}
        self.done: dict[str, ExecutionResult] = {}

    def __call__(self, pairs: list) -> list:
        self.asked.append([item.execution_id for _, item in pairs])
        out = []
        for position, item in pairs:
            if item.execution_id not in self.done:
                v, c = self.variant_of[item.execution_id], self.case_of[item.execution_id]
                ok = bool(self.outcomes[v, c, item.repetition])
                node = NodeRecord("answer", "impl", "1", 0.0, 0.1, "completed", run_s=0.1)
                self.done[item.execution_id] = ExecutionResult(
                    execution_id=item.execution_id,
                    project="p",
                    variant={},
                    variant_label=self.labels[v],
                    status="completed" if ok else "failed",
                    initial_state={},
                    nodes=[node],
                    case_id=f"c{c}",
                    repetition=item.repetition,
                )
            out.append((position, self.done[item.execution_id]))
        return out


def _prepare(labels: list[str], cases: int, reps: int = 1, **race: object):
    return prepare_race(
        RaceConfig(**race), labels=labels, evaluators=["answer_hit"], cases=cases, repetitions=reps, concurrency=4
    )


def test_a_clearly_worse_variant_starts_nothing_after_its_drop() -> None:
    labels = ["base", "good", "bad"]
    recorded = _Recorded(_matrix(1, [0.3, 0.3, -1.5], 200, 1), labels)
    race = _prepare(labels, 200, goal="baseline")
    run_race(race, recorded.items, recorded.variant_of, recorded.case_of, 1, recorded)
    verdicts = {v["variant"]: v for v in race.outcome["verdicts"]}
    bad = verdicts["bad"]
    assert bad["verdict"].startswith("worse than base (dropped after")
    asked_bad = [e for round_ in recorded.asked for e in round_ if e.startswith("v2-")]
    assert len(asked_bad) == bad["cases"] == bad["dropped_after"] < 200
    last_round_with_bad = max(i for i, r in enumerate(recorded.asked) if any(e.startswith("v2-") for e in r))
    assert all(not e.startswith("v2-") for r in recorded.asked[last_round_with_bad + 1 :] for e in r)
    # paired: every round runs the same cases for every variant still in the race
    for round_ in recorded.asked:
        by_variant = {}
        for e in round_:
            by_variant.setdefault(e.split("-")[0], set()).add(e.split("-")[1])
        assert len({frozenset(s) for s in by_variant.values()}) == 1
    cost = race.outcome["cost"]
    assert cost["node_calls"] < cost["full_node_calls"] == 600
    assert race.outcome["kind"] == "anytime-valid"


def test_resuming_replays_the_stored_results_through_the_same_decisions(tmp_path) -> None:
    labels = ["base", "good", "bad"]
    recorded = _Recorded(_matrix(2, [0.3, 0.3, -1.5], 120, 1), labels)
    race = _prepare(labels, 120, goal="baseline", seed=3)
    save_race(tmp_path, "b1", race)
    config, per_round = load_race(tmp_path, "b1")
    assert config == race.config and per_round == race.cases_per_round
    run_race(race, recorded.items, recorded.variant_of, recorded.case_of, 1, recorded)
    first = race.outcome
    again = _Recorded(recorded.outcomes, labels)
    again.done = dict(list(recorded.done.items())[: len(recorded.done) // 2])  # killed half way
    resumed = prepare_race(
        config, labels=labels, evaluators=[], cases=120, repetitions=1, concurrency=4, cases_per_round=per_round
    )
    run_race(resumed, again.items, again.variant_of, again.case_of, 1, again)
    assert resumed.outcome["verdicts"] == first["verdicts"]
    assert load_race(tmp_path, "other") is None


def test_sequential_repetitions_stop_decided_cells_and_label_the_rest_flaky() -> None:
    labels = ["a", "b"]
    rng = np.random.default_rng(4)
    rates = np.array([[1.0] * 20 + [0.0] * 20, [0.5] * 40])
    outcomes = (rng.random((2, 40, 30)) < rates[:, :, None]).astype(float)
    recorded = _Recorded(outcomes, labels)
    race = _prepare(labels, 40, reps=30, goal="baseline", repetition_threshold=0.6, min_cases=1000)
    run_race(race, recorded.items, recorded.variant_of, recorded.case_of, 30, recorded)
    cells = race.outcome["cells"]
    a = [cells["a"][str(c)] for c in range(40)]
    assert a[:20] == ["pass"] * 20 and a[20:] == ["fail"] * 20
    runs = {}
    for e in recorded.done:
        v, c, _ = e.split("-")
        runs[(v, c)] = runs.get((v, c), 0) + 1
    assert max(runs[("v0", f"c{c}")] for c in range(40)) < 30  # decided cells stopped repeating
    assert set(cells["b"].values()) <= {"fail", "flaky", "pass"}


@pytest.mark.parametrize(
    ("race", "field"),
    [
        ({"primary_metric": "nonsense"}, "race.primary_metric"),
        ({"alpha": 2}, "race.alpha"),
        ({"epsilon": -1}, "race.epsilon"),
        ({"baseline": "nope"}, "race.baseline"),
        ({"primary_metric": "run_s", "repetition_threshold": 0.8}, "race.repetition_threshold"),
    ],
)
def test_bad_races_fail_before_any_work(race: dict, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        prepare_race(race, labels=["a", "b"], evaluators=["answer_hit"], cases=10, repetitions=1, concurrency=2)
    assert info.value.field == field


def test_a_race_needs_two_variants() -> None:
    with pytest.raises(ConfigError, match="race"):
        prepare_race({}, labels=["a"], evaluators=[], cases=10, repetitions=1, concurrency=2)
