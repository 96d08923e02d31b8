"""Comparing variant combinations against a baseline, and regressions beyond tolerances.

``BatchTestResult.compare(metric, baseline)`` gives one :class:`ComparisonRow`
per variant combination from the paired analysis of the batch
(:mod:`wtb_prefect.analysis.paired`, :mod:`wtb_prefect.analysis.verdicts`):
the variant's and the baseline's means over the cases both completed, the mean
paired difference with its interval (the t-test's own beside a t-test, else a
paired bootstrap one), the test's p-value, the p-value
corrected over every (variant, metric) test of the batch, and the verdict.
:func:`check_regressions` applies tolerances per metric; the batch flow's
regression gate (:mod:`wtb_prefect.batch.gate`) is built on it.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from wtb_prefect.analysis.evaluation import lower_is_better
from wtb_prefect.analysis.paired import Correction, PairedComparison, PairedTest
from wtb_prefect.analysis.verdicts import BatchAnalysis
from wtb_prefect.define.project import DEFAULT, WORKFLOW_KEY
from wtb_prefect.errors import ConfigError, WTBError
from wtb_prefect.results import ExecutionResult

__all__ = [
    "AnalysedBatch",
    "ComparisonRow",
    "Regression",
    "RegressionError",
    "Tolerance",
    "canonical_choice",
    "check_regressions",
    "compare_variants",
    "comparison_table",
    "parse_tolerances",
    "resolve_baseline",
]


class AnalysedBatch(Protocol):
    """What comparing needs of a batch: :class:`~wtb_prefect.analysis.batch_result.BatchTestResult` is one.

    Named as a protocol so that this module, which ``BatchTestResult`` builds
    on, does not import it back.
    """

    results: list[ExecutionResult]

    def by_variant(self) -> dict[str, list[ExecutionResult]]: ...

    def analysis(
        self,
        baseline: str | dict[str, str] | None = None,
        metrics: Sequence[str] = (),
        *,
        correction: Correction = "holm",
        test: PairedTest = "auto",
        alpha: float = 0.05,
    ) -> BatchAnalysis: ...


logger = logging.getLogger(__name__)

METRIC_ALIASES = {"success_rate": "success", "error_rate": "error", "latency": "run_s"}
"""Other names of metrics; ``latency`` compares the nodes' own run time (``run_s``), not ``latency_s``."""


@dataclass(frozen=True)
class ComparisonRow:
    """One variant combination against the baseline on one metric, paired by case.

    ``n`` counts the cases both completed (repetitions averaged per case),
    ``baseline_n`` the baseline's cases with a value; ``value`` and
    ``baseline_value`` are means over the paired cases (each side's own
    mean when there are none). ``difference`` is variant minus baseline with
    its interval (the t-test's own beside a t-test, else a paired bootstrap
    one); ``p_value`` comes from ``method`` and
    ``p_adjusted`` is corrected over the batch's tests (``correction``).
    ``significant`` is True when the ``verdict`` is better or worse;
    ``verdict`` says ``too few cases`` below
    :data:`~wtb_prefect.analysis.paired.MIN_PAIRED_CASES` pairs. ``mde`` is the
    minimal detectable effect when no difference was detected; ``missing`` the
    cases completed on one side only.
    """

    variant: str
    metric: str
    n: int
    value: float | None
    baseline: str
    baseline_n: int
    baseline_value: float | None
    difference: float | None
    relative_difference: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    significant: bool
    method: str
    p_adjusted: float | None = None
    verdict: str = ""
    correction: str = "none"
    mde: float | None = None
    missing: tuple[str, ...] = ()
    confidence: float = 0.95
    """The level of ``ci_low``/``ci_high``: the batch's correction sets it (see ``interval_level``)."""

    def as_dict(self, digits: int = 4) -> dict[str, Any]:
        """The row as a flat dict, floats rounded to ``digits``."""
        return {k: round(v, digits) if isinstance(v, float) else v for k, v in asdict(self).items()}


def canonical_choice(choice: Mapping[str, str]) -> dict[str, str]:
    """A variant choice without its defaults, so equal choices compare equal."""
    canonical = {k: v for k, v in choice.items() if v != DEFAULT}
    canonical.setdefault(WORKFLOW_KEY, DEFAULT)
    return canonical


def resolve_baseline(batch: AnalysedBatch, baseline: str | Mapping[str, str] | None) -> str:
    """The label of the baseline combination: given as a label or a ``{node: variant}`` dict.

    None means the first combination of the batch's variant matrix.

    Raises:
        ConfigError: no combination of the batch matches ``baseline``.
    """
    groups = batch.by_variant()
    if not groups:
        raise ConfigError("baseline", "cannot be chosen in an empty batch", "run at least one execution")
    if baseline is None:
        return next(iter(groups))
    if isinstance(baseline, str):
        if baseline in groups:
            return baseline
    elif isinstance(baseline, Mapping):
        wanted = canonical_choice(baseline)
        for label, results in groups.items():
            if canonical_choice(results[0].variant) == wanted:
                return label
    raise ConfigError(
        "baseline",
        f"{baseline!r} is not a variant combination of this batch",
        f"give one of {list(groups)} (a label) or its {{node: variant}} dict",
    )


def _metric_name(batch: AnalysedBatch, metric: str) -> str:
    name = METRIC_ALIASES.get(metric, metric)
    known = sorted({m for r in batch.results for m in r.metrics})
    if name not in known:
        raise ConfigError("metric", f"{metric!r} is not recorded in this batch", f"use one of {known}")
    return name


def compare_variants(
    batch: AnalysedBatch,
    metric: str,
    baseline: str | Mapping[str, str] | None = None,
    confidence: float = 0.95,
    *,
    correction: Correction = "holm",
    test: PairedTest = "auto",
) -> list[ComparisonRow]:
    """Each other variant combination against ``baseline`` on ``metric``, paired by case.

    The p-values are corrected (``holm``, ``bh`` or ``none``) over the batch's
    family of tests: every variant on success, run time, every score and
    ``metric`` (see :func:`wtb_prefect.analysis.verdicts.analyse_batch`); the
    family's error level is ``1 - confidence``. ``test`` is ``auto`` (exact
    McNemar for 0/1 values, else the paired t-test), ``t`` or ``wilcoxon``.

    Raises:
        ConfigError: an unknown metric or baseline, or a bad option.
    """
    if not 0 < confidence < 1:
        raise ConfigError("confidence", f"is {confidence}", "give a level between 0 and 1, e.g. 0.95")
    name = _metric_name(batch, metric)
    base_label = resolve_baseline(batch, baseline)
    analysis = batch.analysis(base_label, metrics=[name], correction=correction, test=test, alpha=1 - confidence)
    return [_row(c) for c in analysis.rows(name)]


def _row(c: PairedComparison) -> ComparisonRow:
    base_n = c.n + len(c.only_baseline)
    relative = c.difference / abs(c.baseline_value) if c.difference is not None and c.baseline_value else None
    return ComparisonRow(
        variant=c.variant,
        metric=c.metric,
        n=c.n,
        value=c.value,
        baseline=c.baseline,
        baseline_n=base_n,
        baseline_value=c.baseline_value,
        difference=c.difference,
        relative_difference=relative,
        ci_low=c.ci_low,
        ci_high=c.ci_high,
        p_value=c.p_value,
        significant=c.significant,
        method=c.test,
        p_adjusted=c.p_adjusted,
        verdict=c.verdict,
        correction=c.correction,
        mde=c.mde,
        missing=c.missing,
        confidence=c.confidence,
    )


# ─── regression gate ───


@dataclass(frozen=True)
class Tolerance:
    """How much worse than the baseline a metric may get before the gate fails.

    ``allowed`` is an absolute amount, or a fraction of the baseline value when
    ``relative``. ``higher_is_better`` None takes the metric's usual
    direction (latency, error, cost and tokens go down; scores go up). With
    ``require_significance`` a regression also needs the corrected paired
    verdict to be "worse" (significant after Holm over the batch's tests, and
    at least :data:`~wtb_prefect.analysis.paired.MIN_PAIRED_CASES` pairs).
    """

    allowed: float = 0.0
    relative: bool = False
    higher_is_better: bool | None = None
    require_significance: bool = False


@dataclass(frozen=True)
class Regression:
    """A variant combination that got worse than the baseline beyond tolerance."""

    variant: str
    metric: str
    baseline: str
    value: float | None
    baseline_value: float | None
    change: float | None
    allowed: float
    p_value: float | None
    """The paired test's p-value, corrected over the batch's tests."""

    def __str__(self) -> str:
        if self.value is None:
            return f"{self.variant}: no {self.metric} values (baseline {self.baseline} has {self.baseline_value:.4g})"
        return (
            f"{self.variant}: {self.metric} {self.value:.4g} vs {self.baseline_value:.4g} in {self.baseline} "
            f"(change {self.change:+.4g}, allowed {self.allowed:.4g} worse"
            + (f", corrected p={self.p_value:.3g})" if self.p_value is not None else ")")
        )


class RegressionError(WTBError):
    """A batch's variant combination regressed against the baseline beyond a tolerance."""

    def __init__(self, regressions: Sequence[Regression], batch: AnalysedBatch | None = None) -> None:
        self.regressions = list(regressions)
        self.batch = batch
        lines = "\n".join(f"  - {r}" for r in self.regressions)
        super().__init__(
            f"{len(self.regressions)} regression(s) against the baseline:\n{lines}\n"
            "Fix: improve the variant, or loosen the tolerance if the change is acceptable"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.regressions, self.batch))


ToleranceSpec = float | int | str | Tolerance | Mapping[str, Any]


def _tolerance(metric: str, spec: ToleranceSpec) -> Tolerance:
    field = f"tolerances[{metric!r}]"
    if isinstance(spec, Tolerance):
        tolerance = spec
    elif isinstance(spec, bool):
        raise ConfigError(field, "is a bool", "give an amount like 0.05 or a share like '5%'")
    elif isinstance(spec, (int, float)):
        tolerance = Tolerance(allowed=float(spec))
    elif isinstance(spec, str):
        text = spec.strip()
        match = re.fullmatch(r"([0-9]*\.?[0-9]+)\s*(%?)", text)
        if not match:
            raise ConfigError(field, f"{spec!r} does not parse", "give an amount like '0.05' or a share like '5%'")
        amount = float(match.group(1))
        tolerance = Tolerance(allowed=amount / 100 if match.group(2) else amount, relative=bool(match.group(2)))
    elif isinstance(spec, Mapping):
        try:
            tolerance = Tolerance(**spec)
        except TypeError as exc:
            raise ConfigError(
                field, str(exc), "use the keys allowed, relative, higher_is_better, require_significance"
            ) from None
    else:
        raise ConfigError(field, f"is {type(spec).__name__}", "give a number, a string like '5%' or a Tolerance")
    if not math.isfinite(tolerance.allowed) or tolerance.allowed < 0:
        raise ConfigError(field, f"allows {tolerance.allowed}", "give a non-negative finite amount")
    return tolerance


def parse_tolerances(specs: Sequence[str] | Mapping[str, ToleranceSpec]) -> dict[str, Tolerance]:
    """Tolerances from ``{"accuracy": 0.05, "latency_s": "20%"}`` or CLI strings ``["accuracy=0.05"]``.

    Raises:
        ConfigError: a spec that does not parse, naming it and the expected form.
    """
    if isinstance(specs, Mapping):
        return {metric: _tolerance(metric, spec) for metric, spec in specs.items()}
    parsed: dict[str, Tolerance] = {}
    for text in specs:
        metric, sep, amount = str(text).partition("=")
        if not sep or not metric.strip():
            raise ConfigError(
                "tolerance", f"{text!r} does not parse", "write METRIC=AMOUNT, e.g. accuracy=0.05 or latency_s=20%"
            )
        parsed[metric.strip()] = _tolerance(metric.strip(), amount)
    return parsed


def check_regressions(
    batch: AnalysedBatch,
    baseline: str | Mapping[str, str] | None,
    tolerances: Mapping[str, ToleranceSpec] | Sequence[str],
    confidence: float = 0.95,
) -> list[Regression]:
    """The variant combinations that got worse than ``baseline`` beyond a metric's tolerance.

    A combination without any value of a gated metric (e.g. every execution
    failed) is a regression when the baseline has values.

    Raises:
        ConfigError: an unknown baseline or metric, or a bad tolerance.
    """
    regressions: list[Regression] = []
    parsed = parse_tolerances(tolerances)
    for metric, tolerance in parsed.items():
        for row in compare_variants(batch, metric, baseline, confidence):
            higher = tolerance.higher_is_better
            if higher is None:
                higher = not lower_is_better(row.metric)
            base = row.baseline_value
            allowed = tolerance.allowed * abs(base) if tolerance.relative and base is not None else tolerance.allowed
            if row.value is None:
                if base is not None:
                    regressions.append(
                        Regression(row.variant, row.metric, row.baseline, None, base, None, allowed, None)
                    )
                continue
            if base is None or row.difference is None:
                continue
            worse_by = -row.difference if higher else row.difference
            if worse_by > allowed + 1e-12 and (not tolerance.require_significance or row.significant):
                regressions.append(
                    Regression(
                        row.variant,
                        row.metric,
                        row.baseline,
                        row.value,
                        base,
                        row.difference,
                        allowed,
                        row.p_adjusted if row.p_adjusted is not None else row.p_value,
                    )
                )
    return regressions


# ─── tables ───


def comparison_table(batch: AnalysedBatch, baseline: str | Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """The batch's paired comparison against ``baseline`` (success, run time, every score), for display.

    One row per (metric, variant): means, difference with its interval (at
    ``confidence``, the level the batch's correction implies), raw and
    Holm-corrected p-values, verdict, minimal detectable effect and the
    number of cases left out because one side did not complete them.
    """
    if len(batch.by_variant()) < 2:
        return []
    rows = []
    for c in batch.analysis(baseline).comparisons:
        row = _row(c)
        data = {
            "metric": row.metric,
            "variant": row.variant,
            "baseline": row.baseline,
            "n": row.n,
            "value": row.value,
            "baseline_value": row.baseline_value,
            "difference": row.difference,
            "ci_low": row.ci_low,
            "ci_high": row.ci_high,
            "confidence": row.confidence,
            "p_value": row.p_value,
            "p_adjusted": row.p_adjusted,
            "verdict": row.verdict,
            "significant": "yes" if row.significant else "no",
            "mde": row.mde,
            "missing": len(row.missing),
            "method": row.method,
        }
        rows.append({k: round(v, 4) if isinstance(v, float) else v for k, v in data.items()})
    return rows
