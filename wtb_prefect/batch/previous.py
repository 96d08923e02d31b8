"""Each deployment run against the last: every variant compared with itself in the previous completed run.

A batch run by a Prefect deployment (a scheduled night, or ``prefect
deployment run``) publishes its per-case figures as a table artifact
(:data:`CASE_METRICS_SUFFIX`, one row per execution) and, when it ends, looks
up the previous run of the same deployment through the Prefect API: the latest
flow run in state Completed, other than itself, that ran any of the same cases.
That run's figures come from its artifact (the Prefect API is the record, and
the run may have had another worker and another state folder); an older run
without one is read from the execution index.

Each variant is then compared with the same variant of that run, paired by
case (a case is the same when its input and expected value are), with the
verdicts of the batch's own comparisons (:mod:`wtb_prefect.analysis.paired`:
``better``, ``worse``, ``no detectable difference``, ``too few cases``),
p-values corrected over every (variant, metric) test together. The result,
:class:`PreviousRunComparison`, is ``batch.tracking["previous"]``: the summary
artifact, the report and MLflow show it, and the regression gate with baseline
``"previous"`` (:data:`PREVIOUS`) reads it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from wtb_prefect.analysis.comparison import METRIC_ALIASES, Regression, Tolerance
from wtb_prefect.analysis.evaluation import lower_is_better
from wtb_prefect.analysis.paired import PairedComparison, compare_family
from wtb_prefect.analysis.verdicts import family_metrics
from wtb_prefect.batch.batch_ids import batch_id_for_flow_run

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun

    from wtb_prefect.analysis.batch_result import BatchTestResult
    from wtb_prefect.results import ExecutionResult

__all__ = [
    "CASE_METRICS_SUFFIX",
    "PREVIOUS",
    "PreviousRunComparison",
    "against_previous_run",
    "case_key",
    "case_rows",
    "compare_rows",
    "previous_regressions",
]

logger = logging.getLogger(__name__)

PREVIOUS = "previous"
"""The regression gate's baseline meaning "the same variant in the previous completed run"."""

CASE_METRICS_SUFFIX = "case-metrics"
"""Artifact key suffix (``wtb-<project>-case-metrics``) of a deployment run's per-case figures."""

_LOOKBACK = 5  # completed runs searched for one with cases in common
_EVERY_FINISHED = ("success", "error")
_SEP = "\x1f"  # joins variant and metric into one key of the corrected family


def case_key(result: ExecutionResult) -> str:
    """A case's identity across runs: its id and a digest of its input and expected value."""
    content = json.dumps({"input": result.initial_state, "expected": result.expected}, sort_keys=True, default=str)
    return f"{result.case_id}:{hashlib.sha1(content.encode()).hexdigest()[:10]}"


def case_rows(results: Sequence[ExecutionResult], metrics: Iterable[str]) -> list[dict[str, Any]]:
    """One row per execution: variant, case key and each metric (None where it does not count).

    ``success`` and ``error`` count every finished execution, other metrics the
    completed ones, as in the batch's own comparisons.
    """
    names = list(dict.fromkeys(metrics))
    rows = []
    for result in results:
        if result.status not in ("completed", "failed"):
            continue
        values = result.metrics
        row: dict[str, Any] = {"variant": result.variant_label, "case": case_key(result)}
        for name in names:
            usable = name in _EVERY_FINISHED or result.status == "completed"
            row[name] = float(values[name]) if usable and name in values else None
        rows.append(row)
    return rows


def _by_case(rows: Iterable[Mapping[str, Any]], metric: str) -> dict[str, dict[str, list[float]]]:
    out: dict[str, dict[str, list[float]]] = {}
    for row in rows:
        cases = out.setdefault(str(row["variant"]), {})
        value = row.get(metric)
        if value is not None:
            cases.setdefault(str(row["case"]), []).append(float(value))
    return out


@dataclass
class PreviousRunComparison:
    """This run's variants against the same variants of the previous completed run of its deployment."""

    flow_run_id: str | None = None
    """The previous run's flow run id (None: there was none to compare with)."""
    flow_run_name: str | None = None
    batch_id: str | None = None
    source: str = ""
    """Where its figures came from: ``artifact`` or ``execution index``."""
    comparisons: list[PairedComparison] = field(default_factory=list)
    """One per (variant, metric): ``value`` this run, ``baseline_value`` the previous run, paired by case."""
    new_variants: list[str] = field(default_factory=list)
    """Variants the previous run did not have (nothing to compare)."""
    note: str = ""
    """Why there is no comparison, when there is none."""

    @property
    def found(self) -> bool:
        """True when a previous run was found and compared."""
        return self.flow_run_id is not None

    @property
    def label(self) -> str:
        """How tables name the previous run."""
        return f"previous run {self.flow_run_name or self.flow_run_id}"

    def worse(self) -> list[PairedComparison]:
        """The comparisons whose corrected verdict is ``worse``."""
        return [c for c in self.comparisons if c.verdict == "worse"]

    def rows(self, digits: int = 4) -> list[dict[str, Any]]:
        """One flat row per (variant, metric) for tables."""
        out = []
        for c in self.comparisons:
            row = {
                "variant": c.variant,
                "metric": c.metric,
                "pairs": c.n,
                "previous": c.baseline_value,
                "current": c.value,
                "difference": c.difference,
                "ci_low": c.ci_low,
                "ci_high": c.ci_high,
                "p_adjusted": c.p_adjusted,
                "verdict": c.verdict,
            }
            out.append({k: round(v, digits) if isinstance(v, float) else v for k, v in row.items()})
        return out


def compare_rows(
    current: Sequence[Mapping[str, Any]], previous: Sequence[Mapping[str, Any]], metrics: Sequence[str]
) -> tuple[list[PairedComparison], list[str]]:
    """Each variant of ``current`` against itself in ``previous``, on ``metrics``, paired by case.

    Returns the comparisons (variant-major, Holm-corrected over all of them) and
    the variants ``previous`` lacks.
    """
    data: dict[str, dict[str, dict[str, dict[str, list[float]]]]] = {}
    directions: dict[str, bool] = {}
    previous_variants = {str(r["variant"]) for r in previous}
    variants = list(dict.fromkeys(str(r["variant"]) for r in current))
    for metric in metrics:
        now, before = _by_case(current, metric), _by_case(previous, metric)
        for variant in variants:
            if variant not in previous_variants:
                continue
            key = f"{variant}{_SEP}{metric}"
            data[key] = {PREVIOUS: before.get(variant, {}), variant: now.get(variant, {})}
            directions[key] = not lower_is_better(metric)
    comparisons = compare_family(data, PREVIOUS, higher_is_better=directions) if data else []
    out = []
    for c in comparisons:
        variant, metric = c.metric.split(_SEP, 1)
        out.append(_named(c, variant, metric))
    order = {v: i for i, v in enumerate(variants)}
    out.sort(key=lambda c: order[c.variant])  # stable: metrics stay in family order
    return out, [v for v in variants if v not in previous_variants]


def _named(c: PairedComparison, variant: str, metric: str) -> PairedComparison:
    from dataclasses import replace

    return replace(c, variant=variant, metric=metric, baseline=PREVIOUS)


def previous_regressions(comparison: PreviousRunComparison, tolerances: Mapping[str, Tolerance]) -> list[Regression]:
    """The variants worse than in the previous run beyond a metric's tolerance (as the gate counts them)."""
    regressions = []
    for metric, tolerance in tolerances.items():
        name = METRIC_ALIASES.get(metric, metric)
        higher = tolerance.higher_is_better
        if higher is None:
            higher = not lower_is_better(name)
        for c in comparison.comparisons:
            if c.metric != name:
                continue
            base = c.baseline_value
            allowed = tolerance.allowed * abs(base) if tolerance.relative and base is not None else tolerance.allowed
            if c.value is None:
                if base is not None:
                    regressions.append(Regression(c.variant, name, comparison.label, None, base, None, allowed, None))
                continue
            if base is None or c.difference is None:
                continue
            worse_by = -c.difference if higher else c.difference
            if worse_by > allowed + 1e-12 and (not tolerance.require_significance or c.verdict == "worse"):
                regressions.append(
                    Regression(c.variant, name, comparison.label, c.value, base, c.difference, allowed, c.p_adjusted)
                )
    return regressions


# ─── the Prefect API: this run's figures out, the previous run's in ───


def _artifact_key(project: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", f"wtb-{project}-{CASE_METRICS_SUFFIX}".lower()).strip("-")


def _family(results: Sequence[ExecutionResult], gated: Iterable[str]) -> list[str]:
    named = [METRIC_ALIASES.get(m, m) for m in gated]
    return list(dict.fromkeys([*family_metrics(results), *named]))


def _read_artifact_rows(client: Any, project: str, flow_run_id: Any) -> list[dict[str, Any]] | None:
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    artifacts = client.read_artifacts(
        artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=[_artifact_key(project)]),
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
        )
    )
    if not artifacts:
        return None
    data = artifacts[0].data
    rows = json.loads(data) if isinstance(data, str) else data
    return rows if isinstance(rows, list) else None


def _index_rows(run: FlowRun, metrics: Sequence[str]) -> list[dict[str, Any]] | None:
    """The previous run's figures from the execution index (a run that published no artifact)."""
    from wtb_prefect.run.execution_index import open_index
    from wtb_prefect.settings import get_settings

    parameters = run.parameters or {}
    batch_id = parameters.get("resume") or parameters.get("batch_id") or batch_id_for_flow_run(run.id)
    index = open_index(get_settings().state_dir)
    results = [r for r in (index.result(e.execution_id) for e in index.list(batch_id=batch_id)) if r is not None]
    return case_rows(results, metrics) if results else None


def _find_previous(
    client: Any, flow_run: FlowRun, project: str, current: list[dict[str, Any]], metrics: Sequence[str]
) -> tuple[FlowRun, list[dict[str, Any]], str] | None:
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterDeploymentId,
        FlowRunFilterId,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    runs = client.read_flow_runs(
        flow_run_filter=FlowRunFilter(
            deployment_id=FlowRunFilterDeploymentId(any_=[flow_run.deployment_id]),
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.COMPLETED])),
            id=FlowRunFilterId(not_any_=[flow_run.id]),
        ),
        sort=FlowRunSort.END_TIME_DESC,
        limit=_LOOKBACK,
    )
    cases = {(r["variant"], r["case"]) for r in current}
    for run in runs:
        rows, source = _read_artifact_rows(client, project, run.id), "artifact"
        if rows is None:
            rows, source = _index_rows(run, metrics), "execution index"
        if rows and cases & {(r.get("variant"), r.get("case")) for r in rows}:
            return run, rows, source
    return None


def against_previous_run(batch: BatchTestResult, gated: Iterable[str] = ()) -> PreviousRunComparison | None:
    """Publish this deployment run's per-case figures and compare it with the previous run.

    The comparison covers the batch's family of metrics (success, the nodes'
    run time, every score) and the metrics its regression gate names (``gated``).

    Sets and returns ``batch.tracking["previous"]``; None (and nothing set)
    when the batch is not run by a deployment. Never raises: the API being
    away, or a previous run that cannot be read, leaves a note instead.
    """
    if not batch.flow_run_id or not batch.results or _single_run():
        return None
    try:
        from prefect import get_client

        with get_client(sync_client=True) as client:
            flow_run = client.read_flow_run(batch.flow_run_id)
            if flow_run.deployment_id is None:
                return None
            metrics = _family(batch.results, gated)
            current = case_rows(batch.results, metrics)
            _publish(batch, current)
            found = _find_previous(client, flow_run, batch.project, current, metrics)
    except Exception as exc:  # the comparison must never fail the batch
        logger.warning("batch %s was not compared with the previous run: %s", batch.batch_id, exc)
        comparison = PreviousRunComparison(note=f"the previous run could not be read ({type(exc).__name__}: {exc})")
        batch.tracking["previous"] = comparison
        return comparison
    if found is None:
        comparison = PreviousRunComparison(
            note="no earlier completed run of this deployment ran any of these cases: nothing to compare"
        )
    else:
        run, rows, source = found
        comparisons, new = compare_rows(current, rows, metrics)
        parameters = run.parameters or {}
        comparison = PreviousRunComparison(
            flow_run_id=str(run.id),
            flow_run_name=run.name,
            batch_id=parameters.get("resume") or parameters.get("batch_id") or batch_id_for_flow_run(run.id),
            source=source,
            comparisons=comparisons,
            new_variants=new,
        )
        _log(batch, comparison)
    batch.tracking["previous"] = comparison
    return comparison


def _single_run() -> bool:
    """A flow run of ``wtb-run`` (one execution): no batch to compare."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    return context is not None and context.flow is not None and context.flow.name == "wtb-run"


def _publish(batch: BatchTestResult, rows: list[dict[str, Any]]) -> None:
    from prefect.artifacts import create_table_artifact

    from wtb_prefect.services.prefect_outage import best_effort

    best_effort(
        "case-metrics artifact",
        create_table_artifact,
        key=_artifact_key(batch.project),
        table=rows,
        description=f"Per-case figures of batch {batch.batch_id}: the next run of this deployment compares with them",
    )


def _log(batch: BatchTestResult, comparison: PreviousRunComparison) -> None:
    from prefect import get_run_logger

    worse = comparison.worse()
    message = "batch %s against %s (batch %s): %d comparisons, %d worse%s"
    detail = "".join(f"; {c.variant} {c.metric} {c.difference:+.3g}" for c in worse if c.difference is not None)
    try:
        get_run_logger().info(
            message,
            batch.batch_id,
            comparison.label,
            comparison.batch_id,
            len(comparison.comparisons),
            len(worse),
            detail,
        )
    except Exception:  # outside a run context
        logger.info(
            message,
            batch.batch_id,
            comparison.label,
            comparison.batch_id,
            len(comparison.comparisons),
            len(worse),
            detail,
        )
