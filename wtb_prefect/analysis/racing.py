"""Racing variants: run cases round by round and stop the variants that are already decided.

Cases come in a seeded random order; every surviving variant runs the same
case (paired), and after each round the race decides, with anytime-valid
sequential tests (:mod:`wtb_prefect.analysis.sequential`), which variants stop:

- goal ``"best"``: a variant stops once its paired difference to the current
  leader (the survivor with the best mean so far) is shown below ``epsilon``:
  it cannot beat the leader by more than ``epsilon``, so the leader is
  epsilon-good against it (best-arm identification with an indifference zone,
  as in LUCB-style elimination). The race is decided when one variant is left.
- goal ``"baseline"``: a variant stops once it is shown better than the
  baseline, worse, or within ``epsilon`` of it either way; the race is decided
  when every variant is.
- in both goals a variant shown worse than the baseline is dropped as worse.

A race that runs out of cases leaves what it could not settle ``undecided``.
Every comparison the race might use is a test in one family: all pairs of
variants (goal ``best``, since the leader can be any of them) or every variant
against the baseline, each pair's two one-sided tests at ``alpha / (2 * pairs)``
(Bonferroni), so the chance that any verdict of the race is wrong is at most
``alpha`` however often it was read. Bounded metrics (0/1 success, scores in a
known range) use betting tests, which adapt to the spread of the paired
differences; unbounded ones (run time) use the asymptotic confidence sequence.

:class:`Race` keeps the state of many independent races at once (a leading
axis of replays), so the same code decides a live batch (one race) and a
replay of hundreds (:mod:`wtb_prefect.analysis.replay`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from wtb_prefect.analysis.sequential import AsymptoticTest, BettingTest, MeanTest
from wtb_prefect.errors import ConfigError

__all__ = ["Race", "RacePolicy", "RaceVerdict", "Reason"]

Goal = Literal["best", "baseline"]

Reason = Literal["", "not better", "worse", "better", "equivalent"]
_REASONS: tuple[Reason, ...] = ("", "not better", "worse", "better", "equivalent")
_NONE, _NOT_BETTER, _WORSE, _BETTER, _EQUIVALENT = range(5)


@dataclass(frozen=True)
class RacePolicy:
    """How a race decides (the statistical part of ``RaceConfig``).

    Args:
        goal: ``"best"`` (the best variant within ``epsilon``) or ``"baseline"``
            (every variant against the baseline).
        alpha: the family's error rate: the chance that any verdict is wrong.
        epsilon: the indifference zone, in the metric's unit.
        min_cases: no variant stops before this many cases.
        bounds: ``(lo, hi)`` of a bounded metric (betting tests); None for an
            unbounded one (asymptotic confidence sequence).
        higher_is_better: the metric's direction.
        baseline: the index of the baseline variant.
    """

    goal: Goal = "best"
    alpha: float = 0.05
    epsilon: float = 0.02
    min_cases: int = 10
    bounds: tuple[float, float] | None = (0.0, 1.0)
    higher_is_better: bool = True
    baseline: int = 0

    def __post_init__(self) -> None:
        if self.goal not in ("best", "baseline"):
            raise ConfigError("race.goal", f"is {self.goal!r}", "use 'best' or 'baseline'")
        if not 0 < self.alpha < 1:
            raise ConfigError("race.alpha", f"is {self.alpha}", "give a level strictly between 0 and 1, e.g. 0.05")
        if not self.epsilon >= 0:
            raise ConfigError("race.epsilon", f"is {self.epsilon}", "give 0 or a positive indifference zone")
        if self.min_cases < 1:
            raise ConfigError("race.min_cases", f"is {self.min_cases}", "give at least 1")
        if self.bounds is not None:
            lo, hi = self.bounds
            if not hi > lo:
                raise ConfigError("race.bounds", f"is {self.bounds}", "give (lo, hi) with hi > lo")
            if self.epsilon >= hi - lo:
                raise ConfigError("race.epsilon", f"is {self.epsilon}", f"give less than the metric's range {hi - lo}")


@dataclass(frozen=True)
class RaceVerdict:
    """One variant's outcome in a race, and how it was reached.

    ``status`` is ``best`` (the variant the race picked), ``leader`` (ahead
    when the cases ran out, not shown best), ``dropped`` (stopped before the
    end), ``decided`` (goal baseline: settled against the baseline) or
    ``undecided``. ``reason`` says what was shown against ``reference``;
    ``cases`` counts the cases the variant ran (its share of the node calls).
    """

    variant: str
    status: str
    reason: Reason
    reference: str | None
    cases: int
    dropped_after: int | None
    mean: float | None
    verdict: str
    method: str

    def as_dict(self) -> dict[str, object]:
        """The verdict as a flat dict for tables."""
        return {
            "variant": self.variant,
            "status": self.status,
            "verdict": self.verdict,
            "cases": self.cases,
            "dropped_after": self.dropped_after,
            "mean": None if self.mean is None else round(self.mean, 4),
            "method": self.method,
        }


class Race:
    """The state of ``replays`` independent races of the same variants (one for a live batch).

    Feed each round's case with :meth:`observe` (one value per replay and
    variant; NaN where a variant did not run or has no value) and then call
    :meth:`decide`. :attr:`alive` says which variants run the next case.
    """

    def __init__(self, variants: Sequence[str], policy: RacePolicy, replays: int = 1) -> None:
        if len(variants) < 2:
            raise ConfigError("race", f"has {len(variants)} variant(s)", "race at least two variant combinations")
        if len(set(variants)) != len(variants):
            raise ConfigError("race.variants", "repeat a name", "give each variant once")
        if not 0 <= policy.baseline < len(variants):
            raise ConfigError("race.baseline", f"is index {policy.baseline}", f"use 0..{len(variants) - 1}")
        self.variants = list(variants)
        self.policy = policy
        k = len(variants)
        self.k, self.replays = k, replays
        if policy.goal == "best":
            self.pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
        else:
            b = policy.baseline
            self.pairs = [(min(v, b), max(v, b)) for v in range(k) if v != b]
        self._pair_index = np.full((k, k), -1)
        for p, (i, j) in enumerate(self.pairs):
            self._pair_index[i, j] = self._pair_index[j, i] = p
        # each pair has two one-sided directions; Bonferroni over every pair of the family
        self.alpha_test = policy.alpha / (2 * len(self.pairs))
        eps = policy.epsilon
        self._nulls = np.array([-eps, 0.0, eps])
        shape = (replays, len(self.pairs))
        self.test: MeanTest
        if policy.bounds is not None:
            width = policy.bounds[1] - policy.bounds[0]
            self.test = BettingTest(shape, self._nulls, -width, width, self.alpha_test)
            self.method = f"anytime-valid betting test, alpha {policy.alpha:g} split over {len(self.pairs)} pair(s)"
        else:
            self.test = AsymptoticTest(shape, self._nulls, 2 * self.alpha_test)
            self.method = f"asymptotic confidence sequence, alpha {policy.alpha:g} split over {len(self.pairs)} pair(s)"
        # Goal best: one e-process per variant against "this variant is better than every other by more
        # than epsilon", betting each case against the current leader (the runner-up for the leader).
        # Under that null every bet has expectation at most 1 whichever comparator it uses, and with
        # epsilon > 0 at most one variant's null can hold, so these tests need no split of alpha.
        self.elimination: MeanTest | None = None
        if policy.goal == "best":
            alpha_elim = policy.alpha if eps > 0 else policy.alpha / k
            if policy.bounds is not None:
                width = policy.bounds[1] - policy.bounds[0]
                self.elimination = BettingTest((replays, k), [eps], -width, width, alpha_elim)
            else:
                self.elimination = AsymptoticTest((replays, k), [eps], 2 * alpha_elim)
        self.alive = np.ones((replays, k), dtype=bool)
        self.finished = np.zeros(replays, dtype=bool)
        self.cases = np.zeros((replays, k), dtype=np.int64)
        self.sums = np.zeros((replays, k))
        self.reason = np.zeros((replays, k), dtype=np.int8)
        self.reference = np.full((replays, k), -1)
        self.dropped_after = np.full((replays, k), -1)
        self.rounds = np.zeros(replays, dtype=np.int64)
        self._i = np.array([i for i, _ in self.pairs])
        self._j = np.array([j for _, j in self.pairs])

    # ─── evidence ───

    def observe(self, values: np.ndarray) -> None:
        """One case's values, ``(replays, variants)`` (or ``(variants,)`` for one race).

        Only variants alive in unfinished races take the case. A value of NaN
        (the variant failed to record the metric) leaves its pairs out of
        this case but still counts as a case run.
        """
        x = np.asarray(values, dtype=float).reshape(self.replays, self.k)
        if not self.policy.higher_is_better:
            x = -x
        running = self.alive & ~self.finished[:, None]
        if self.elimination is not None:
            self._observe_elimination(x, running)
        self.cases += running
        self.sums += np.where(running & ~np.isnan(x), x, 0.0)
        self.rounds += ~self.finished
        both = running[:, self._i] & running[:, self._j]
        d = x[:, self._i] - x[:, self._j]
        both &= ~np.isnan(d)
        self.test.update(np.where(both, d, 0.0), both)

    def _observe_elimination(self, x: np.ndarray, running: np.ndarray) -> None:
        """Each variant's difference to its comparator, chosen before the case's values are seen."""
        assert self.elimination is not None
        rows = np.arange(self.replays)
        leader = self.leader()
        means = np.where(self.alive, np.nan_to_num(self.means(), nan=-np.inf), -np.inf)
        means[rows, leader] = -np.inf
        runner_up = np.argmax(means, axis=1)
        comparator = np.where(np.arange(self.k)[None, :] == leader[:, None], runner_up[:, None], leader[:, None])
        other = np.take_along_axis(x, comparator, axis=1)
        d = x - other
        active = running & np.take_along_axis(running, comparator, axis=1) & ~np.isnan(d)
        active &= comparator != np.arange(self.k)[None, :]
        self.elimination.update(np.where(active, d, 0.0), active)

    def means(self) -> np.ndarray:
        """Each variant's mean over the cases it ran, ``(replays, variants)``, in the higher-is-better sign."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.sums / self.cases

    def _shown(self, a: np.ndarray, b: np.ndarray, null: int, below: bool) -> np.ndarray:
        """Per replay: is ``mean(a) - mean(b)`` shown below (or above) ``nulls[null]``?

        Pairs are stored as ``i < j`` with ``d = x_i - x_j``; for ``a > b`` the
        claim ``x_a - x_b < c`` is ``d > -c``, the mirrored null.
        """
        rows = np.arange(self.replays)
        p = self._pair_index[a, b]
        ok = p >= 0
        p = np.where(ok, p, 0)
        straight = a < b
        mirrored = 2 - null  # index of -nulls[null]
        if below:
            got = np.where(straight, self.test.below[rows, p, null], self.test.above[rows, p, mirrored])
        else:
            got = np.where(straight, self.test.above[rows, p, null], self.test.below[rows, p, mirrored])
        return got & ok & (a != b)

    # ─── decisions ───

    def decide(self) -> None:
        """Stop the variants the evidence so far has decided; finish the races whose goal is met."""
        ready = ~self.finished & (self.rounds >= self.policy.min_cases)
        if self.policy.goal == "best":
            self._decide_best(ready)
        else:
            self._decide_baseline(ready)

    def _drop(self, mask: np.ndarray, v: int, reason: int, reference: np.ndarray) -> None:
        self.alive[mask, v] = False
        self.reason[mask, v] = reason
        self.reference[mask, v] = reference[mask] if reference.ndim else reference
        self.dropped_after[mask, v] = self.cases[mask, v]

    def _decide_best(self, ready: np.ndarray) -> None:
        b = self.policy.baseline
        baseline = np.full(self.replays, b)
        for v in range(self.k):
            worse_than_base = ready & self.alive[:, v] & self._shown(np.full(self.replays, v), baseline, 1, True)
            self._drop(worse_than_base, v, _WORSE, baseline)
        leader = self.leader()
        assert self.elimination is not None
        for v in range(self.k):
            vs = np.full(self.replays, v)
            candidate = ready & self.alive[:, v] & (leader != v)
            not_better = candidate & (self.elimination.below[:, v, 0] | self._shown(vs, leader, 2, True))
            worse = not_better & self._shown(vs, leader, 1, True)
            self._drop(worse, v, _WORSE, leader)
            self._drop(not_better & ~worse, v, _NOT_BETTER, leader)
        self.finished |= self.alive.sum(axis=1) <= 1

    def _decide_baseline(self, ready: np.ndarray) -> None:
        b = self.policy.baseline
        baseline = np.full(self.replays, b)
        for v in range(self.k):
            if v == b:
                continue
            vs = np.full(self.replays, v)
            open_ = ready & self.alive[:, v]
            better = open_ & self._shown(vs, baseline, 1, False)
            worse = open_ & self._shown(vs, baseline, 1, True)
            within = open_ & self._shown(vs, baseline, 2, True) & self._shown(vs, baseline, 0, False)
            self._drop(better, v, _BETTER, baseline)
            self._drop(worse, v, _WORSE, baseline)
            self._drop(within & ~better & ~worse, v, _EQUIVALENT, baseline)
        others = np.delete(self.alive, b, axis=1)
        done = ~others.any(axis=1)
        self.finished |= done
        self.alive[done, b] = False

    def leader(self) -> np.ndarray:
        """Per replay, the alive variant with the best mean so far (the first on a tie)."""
        means = np.where(self.alive, np.nan_to_num(self.means(), nan=-np.inf), -np.inf)
        return np.argmax(means, axis=1)

    def stop(self) -> None:
        """End every race (the cases ran out): what is not decided stays undecided."""
        self.finished[:] = True

    # ─── outcome ───

    def picked(self) -> np.ndarray:
        """Per replay, the variant the race names best: the last survivor, else the leader at the end."""
        return self.leader()

    def claims(self) -> np.ndarray:
        """Per replay: did the race claim any variant better or worse than another (not just within epsilon)?"""
        return np.isin(self.reason, (_WORSE, _BETTER)).any(axis=1)

    def verdicts(self, replay: int = 0) -> list[RaceVerdict]:
        """Each variant's outcome in race ``replay``, with the way it was reached."""
        means = self.means()[replay]
        sign = 1.0 if self.policy.higher_is_better else -1.0
        leader = int(self.leader()[replay])
        decided = bool(self.alive[replay].sum() <= 1) if self.policy.goal == "best" else bool(self.finished[replay])
        out = []
        for v, name in enumerate(self.variants):
            reason = _REASONS[int(self.reason[replay, v])]
            ref_index = int(self.reference[replay, v])
            ref = self.variants[ref_index] if ref_index >= 0 else None
            after = int(self.dropped_after[replay, v])
            cases = int(self.cases[replay, v])
            mean = None if np.isnan(means[v]) else float(sign * means[v])
            eps = self.policy.epsilon
            if reason:
                status = "dropped" if self.policy.goal == "best" or reason == "worse" else "decided"
                text = {
                    "not better": f"not better than {ref} by more than {eps:g}",
                    "worse": f"worse than {ref}",
                    "better": f"better than {ref}",
                    "equivalent": f"within {eps:g} of {ref}",
                }[reason]
                text += f" ({'dropped' if status == 'dropped' else 'decided'} after {after} cases)"
            elif self.policy.goal == "best" and v == leader:
                status = "best" if decided else "leader"
                text = (
                    f"best within {eps:g} after {cases} cases"
                    if decided
                    else f"undecided: ahead after {cases} cases, not shown best"
                )
            elif self.policy.goal == "baseline" and v == self.policy.baseline:
                status, text = "baseline", f"baseline ({cases} cases)"
            else:
                status, text = "undecided", f"undecided after {cases} cases"
            out.append(
                RaceVerdict(
                    variant=name,
                    status=status,
                    reason=reason,
                    reference=ref,
                    cases=cases,
                    dropped_after=after if after >= 0 else None,
                    mean=mean,
                    verdict=text,
                    method=self.method,
                )
            )
        return out
