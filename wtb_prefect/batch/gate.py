"""The regression gate of a batch: validated with the plan, enforced when the batch ends.

``run_batch_test(..., regression_gate={"baseline": ..., "tolerances": {...}})``
and the ``wtb-batch-test`` flow's ``regression_gate`` parameter go through
:func:`prepare_gate` before any work starts; when the batch ends,
:meth:`RegressionGate.enforce` publishes the verdict as a Prefect table
artifact and raises :class:`~wtb_prefect.analysis.comparison.RegressionError`,
which fails the flow run and the CLI.

A raced batch (``batch.tracking["race"]``) is gated on its decided verdicts
only: a variant the race dropped or left undecided ran on fewer cases than
the others, so its means are neither a pass nor a fail; the gate lists it as
not gated, with the race's verdict, and says so.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from wtb_prefect.analysis.comparison import (
    METRIC_ALIASES,
    Regression,
    RegressionError,
    Tolerance,
    ToleranceSpec,
    canonical_choice,
    check_regressions,
    parse_tolerances,
    resolve_baseline,
)
from wtb_prefect.batch.previous import PREVIOUS, PreviousRunComparison, previous_regressions
from wtb_prefect.errors import ConfigError
from wtb_prefect.run.context import CompiledVariant

if TYPE_CHECKING:
    from wtb_prefect.analysis.batch_result import BatchTestResult

__all__ = ["RegressionGate", "artifact_key", "enforce_regression_gate", "prepare_gate", "race_not_gated"]

logger = logging.getLogger(__name__)


def artifact_key(project: str, suffix: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", f"wtb-{project}-{suffix}".lower()).strip("-")


def enforce_regression_gate(
    batch: BatchTestResult,
    baseline: str | Mapping[str, str] | None,
    tolerances: Mapping[str, ToleranceSpec] | Sequence[str],
) -> None:
    """Check the gate, show its verdict as a Prefect table artifact, raise on regressions.

    Raises:
        RegressionError: at least one combination regressed (fails the flow run).
        ConfigError: an unknown baseline or metric, or a bad tolerance.
    """
    if baseline == PREVIOUS:
        regressions, base_label = _against_previous(batch, tolerances)
    else:
        regressions = check_regressions(batch, baseline, tolerances)
        base_label = resolve_baseline(batch, baseline)
    not_gated = race_not_gated(batch.tracking.get("race"))
    regressions = [r for r in regressions if r.variant not in not_gated]
    rows = [
        {
            "variant": r.variant,
            "metric": r.metric,
            "value": r.value,
            "baseline": r.baseline,
            "baseline_value": r.baseline_value,
            "change": r.change,
            "allowed": r.allowed,
            "verdict": "REGRESSED",
        }
        for r in regressions
    ]
    rows += [{"variant": label, "verdict": f"not gated: {verdict}"} for label, verdict in not_gated.items()]
    race_note = (
        f"; raced: decided verdicts only ({len(not_gated)} variant(s) dropped or undecided, not gated)"
        if "race" in batch.tracking
        else ""
    )
    from prefect.context import FlowRunContext

    if FlowRunContext.get() is None:  # nothing to attach it to, and Prefect would start a temporary server for it
        logger.debug("no regression-gate artifact outside a flow run")
    else:
        try:
            from prefect.artifacts import create_table_artifact

            from wtb_prefect.services.prefect_outage import best_effort

            best_effort(
                "regression-gate artifact",
                create_table_artifact,
                key=artifact_key(batch.project, "regression-gate"),
                table=rows
                or [{"verdict": "passed", "baseline": base_label, "metrics": ", ".join(parse_tolerances(tolerances))}],
                description=f"Regression gate of batch {batch.batch_id} against {base_label}: "
                + (f"{len(regressions)} regression(s)" if regressions else "passed")
                + race_note,
            )
        except Exception:  # the gate's verdict stands without its artifact
            logger.debug("no regression-gate artifact", exc_info=True)
    batch.tracking["regressions"] = [str(r) for r in regressions]
    if "race" in batch.tracking:
        batch.tracking["gate"] = {"gated": "decided race verdicts only", "not_gated": dict(not_gated)}
    if regressions:
        raise RegressionError(regressions, batch)


_GATED = ("best", "decided", "baseline")
"""Race statuses the gate judges: the variant the race picked, those it settled against the baseline, the baseline."""


def race_not_gated(race: Mapping[str, Any] | None) -> dict[str, str]:
    """The variants of a race the gate leaves out (dropped or undecided), with the race's verdict on each."""
    if not race:
        return {}
    return {
        str(v["variant"]): f"{v['status']}: {v['verdict']}"
        for v in race.get("verdicts", [])
        if v.get("status") not in _GATED
    }


def _against_previous(
    batch: BatchTestResult, tolerances: Mapping[str, ToleranceSpec] | Sequence[str]
) -> tuple[list[Regression], str]:
    """The gate against the previous completed run of the deployment (``batch.tracking["previous"]``).

    Without a previous run (the deployment's first, a run outside a deployment,
    or no case in common) nothing can regress: the gate passes and says why.
    """
    comparison = batch.tracking.get("previous")
    if not isinstance(comparison, PreviousRunComparison) or not comparison.found:
        note = comparison.note if isinstance(comparison, PreviousRunComparison) else "not a deployment run"
        logger.warning("regression gate of batch %s against the previous run: %s", batch.batch_id, note)
        return [], f"the previous run ({note})"
    return previous_regressions(comparison, parse_tolerances(tolerances)), comparison.label


@dataclass(frozen=True)
class RegressionGate:
    """A validated gate: the baseline combination and a tolerance per metric."""

    baseline: str | Mapping[str, str] | None
    tolerances: Mapping[str, Tolerance]
    require_significance: bool = False

    def enforce(self, batch: BatchTestResult) -> None:
        """See :func:`enforce_regression_gate`."""
        enforce_regression_gate(batch, self.baseline, self.tolerances)


_BUILTIN_METRICS = {"success", "error", "latency_s", *METRIC_ALIASES}


def prepare_gate(
    evaluators: Sequence[str], variants: Sequence[CompiledVariant], gate: Mapping[str, Any] | None
) -> RegressionGate | None:
    """Validate a batch's regression gate before any work starts; None without a gate.

    ``evaluators`` are the project's evaluator names and ``variants`` the
    batch's compiled combinations (the plan passes them; the gate does not
    import the plan, which holds the gate).
    ``gate`` is ``{"baseline": label | {node: variant} | "previous" | None, "tolerances":
    {metric: amount | "5%" | Tolerance} | ["metric=amount", ...],
    "require_significance": False}``; the baseline None is the first
    combination of the matrix; ``"previous"`` compares each variant with
    itself in the previous completed run of the flow run's deployment
    (:mod:`wtb_prefect.batch.previous`). With ``require_significance`` a variant
    regresses only where the paired verdict, corrected over the batch's
    tests, is "worse" beyond the tolerance (opt-in: by default the absolute
    tolerance alone decides).

    Raises:
        ConfigError: unknown keys, a bad tolerance, a baseline that is not in
            the matrix, or a metric that no execution will record.
    """
    if not gate:
        return None
    if not isinstance(gate, Mapping) or set(gate) - {"baseline", "tolerances", "require_significance"}:
        raise ConfigError(
            "regression_gate",
            f"is {gate!r}",
            "give {'baseline': ..., 'tolerances': {metric: amount}, 'require_significance': False}",
        )
    require = gate.get("require_significance") or False
    if not isinstance(require, bool):
        raise ConfigError("regression_gate.require_significance", f"is {require!r}", "give true or false")
    tolerances = parse_tolerances(gate.get("tolerances") or {})
    if require:
        tolerances = {m: replace(t, require_significance=True) for m, t in tolerances.items()}
    if not tolerances:
        raise ConfigError("regression_gate.tolerances", "is empty", "name at least one metric, e.g. {'accuracy': 0.05}")
    evaluators = list(evaluators)
    for metric in tolerances:
        known = (
            metric in _BUILTIN_METRICS
            or metric.startswith(("node.", "total."))
            or any(metric == e or metric.startswith(f"{e}.") for e in evaluators)
        )
        if not known:
            raise ConfigError(
                f"regression_gate.tolerances[{metric!r}]",
                "is not a metric of this project",
                f"use an evaluator ({evaluators}), success, error_rate, latency_s, node.<node>.<metric> or total.<metric>",
            )
    baseline = gate.get("baseline")
    if baseline == PREVIOUS:  # each variant against itself in the previous run: one variant is enough
        return RegressionGate(baseline, tolerances, require)
    labels = [v.label for v in variants]
    if isinstance(baseline, Mapping):
        wanted = canonical_choice(baseline)
        if not any(canonical_choice(v.choice.as_dict()) == wanted for v in variants):
            raise ConfigError(
                "regression_gate.baseline", f"{dict(baseline)} is not in the variant matrix", f"use one of {labels}"
            )
    elif baseline is not None and baseline not in labels:
        raise ConfigError(
            "regression_gate.baseline", f"{baseline!r} is not in the variant matrix", f"use one of {labels}"
        )
    if len(labels) < 2:
        raise ConfigError(
            "regression_gate",
            "needs at least two variant combinations",
            "add the baseline and a candidate to the matrix",
        )
    return RegressionGate(baseline, tolerances, require)
