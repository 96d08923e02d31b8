"""MLflow records every batch: one experiment per project, one parent run per
batch, one child run per variant combination.

A child run's params name the combination, its workflow variant and each
node's implementation, source version, resources and environment; its metrics
aggregate the test cases (:func:`wtb_prefect.analysis.evaluation.aggregate_metrics`:
success/error rate, mean and 95% interval of every score and reported metric,
p50/p95 of total and per-node latency; where nodes called a chat model, the
mean ``cost_usd``, ``saved_usd`` and ``tokens.*`` per case and, from
:func:`cost_totals`, the combination's ``spent_usd.total``,
``saved_usd.total``, ``tokens.<kind>.total`` and ``usd_per_passed_case``);
the per-case results are an MLflow table (``cases.json``). The parent run
holds every case, the batch's ``spent_usd.total`` and ``saved_usd.total``,
and the comparison against the first combination.

Tracking store: ``WTB_MLFLOW_TRACKING_URI``, else ``MLFLOW_TRACKING_URI``, else
SQLite at ``<WTB_HOME>/mlflow.db`` with artifacts in ``<WTB_HOME>/mlartifacts``;
:func:`mlflow_ui_command` prints the command that shows it. Every write names
its run id through ``MlflowClient``: never MLflow's process-global active run,
so concurrent batches cannot write to each other's runs. ``WTB_MLFLOW_ENABLED=false``
switches recording off.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import re
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wtb_prefect.analysis.evaluation import aggregate_metrics
from wtb_prefect.batch.observers import BatchObserver, register_observer_factory
from wtb_prefect.settings import WTBSettings, get_settings

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from wtb_prefect.batch.plan import BatchPlan
    from wtb_prefect.results import BatchTestResult, ExecutionResult
    from wtb_prefect.run.context import CompiledVariant

__all__ = [
    "MlflowObserver",
    "artifact_root",
    "cost_totals",
    "experiment_url",
    "mlflow_client",
    "mlflow_ui_command",
    "tracking_uri",
]

logger = logging.getLogger(__name__)

_MAX_PARAM = 250  # what MLflow's UI shows whole; longer values (locks, specs) go to provenance.json
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
"""The tag that opens an experiment on MLflow's runs view (not the GenAI overview) in UIs that read it.

MLflow 3's UI decides by its ``workflowType`` instead (the URL's
``?workflowType=machine_learning``, else the browser's last choice, else
GenAI): :func:`experiment_url` gives the address that opens the runs table."""
WORKFLOW_TYPE = "workflowType=machine_learning"
_lock = threading.Lock()
_clients: dict[str, MlflowClient] = {}
_pending: set[threading.Thread] = set()
"""Background set-ups still running; the process waits for them before it exits."""


@atexit.register
def _finish_pending(timeout: float = 120.0) -> None:
    for thread in list(_pending):
        thread.join(timeout)


def tracking_uri(settings: WTBSettings | None = None) -> str:
    """The MLflow tracking URI batches are recorded in."""
    import os

    settings = settings or get_settings()
    if settings.mlflow_tracking_uri:
        return settings.mlflow_tracking_uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{settings.state_dir / 'mlflow.db'}"


def artifact_root(settings: WTBSettings | None = None) -> str:
    """Where new experiments keep their artifacts (tables) by default: ``<WTB_HOME>/mlartifacts``."""
    settings = settings or get_settings()
    return (settings.state_dir / "mlartifacts").as_uri()


def mlflow_ui_command(settings: WTBSettings | None = None) -> str:
    """The shell command that opens the MLflow UI on the tracking store."""
    settings = settings or get_settings()
    uri = tracking_uri(settings)
    if uri.startswith(("http://", "https://", "databricks")):
        return f"open {uri}"
    return f"mlflow ui --backend-store-uri {uri} --default-artifact-root {artifact_root(settings)}"


def experiment_url(ui: str, experiment_id: str) -> str:
    """The address of an experiment's runs table in the MLflow UI at ``ui`` (not its GenAI overview)."""
    return f"{ui.rstrip('/')}/#/experiments/{experiment_id}/runs?{WORKFLOW_TYPE}"


def mlflow_client(uri: str) -> MlflowClient:
    """One client per tracking URI; creating the first one migrates a new SQLite store.

    Two processes that open a new SQLite store at once (two batches started
    together) would both run MLflow's migrations and both fail; a lock file
    beside the database lets one migrate while the other waits.
    """
    with _lock:
        client = _clients.get(uri)
        if client is None:
            from filelock import FileLock
            from mlflow import MlflowClient

            across_processes: Any = contextlib.nullcontext()
            if uri.startswith("sqlite:///"):
                database = Path(uri.removeprefix("sqlite:///"))
                database.parent.mkdir(parents=True, exist_ok=True)
                across_processes = FileLock(f"{database}.lock")
            with across_processes:
                client = MlflowClient(tracking_uri=uri)
                client.search_experiments(max_results=1)  # create the schema now, under the locks
            _clients[uri] = client
        return client


def _experiment_id(client: MlflowClient, name: str, artifacts: str) -> str:
    from mlflow.exceptions import MlflowException

    with _lock:
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            if experiment.lifecycle_stage == "deleted":
                client.restore_experiment(experiment.experiment_id)
            for key, value in EXPERIMENT_KIND.items():
                if experiment.tags.get(key) != value:
                    client.set_experiment_tag(experiment.experiment_id, key, value)
            return experiment.experiment_id
        try:
            tags = {"wtb.project": name, **EXPERIMENT_KIND}
            return client.create_experiment(name, artifact_location=f"{artifacts}/{name}", tags=tags)
        except MlflowException:  # created meanwhile by another process
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
            return experiment.experiment_id


def _key(name: str) -> str:
    """An MLflow metric or param key: letters, digits and ``_-. /`` only."""
    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", name)


def _param(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= _MAX_PARAM else text[: _MAX_PARAM - 1] + "…"


def _resources_label(resources: dict[str, Any]) -> str:
    """``num_cpus=0.25 memory=64MB``: the resources a node asked for, without the unset ones."""
    return " ".join(f"{k}={v}" for k, v in sorted(resources.items()) if v not in (None, {}, [], 0)) or "default"


def _environment_label(environment: dict[str, Any] | None) -> str:
    """``current`` (the driver's interpreter) or the uv environment's key; its lock is in provenance.json."""
    if not environment:
        return "current"
    dependencies = (environment.get("spec") or {}).get("dependencies") or []
    label = f"uv {str(environment.get('key') or '')[:12]}".rstrip()
    return f"{label}: {', '.join(map(str, dependencies))}" if dependencies else label


def _short_name(dotted: str) -> str:
    """``generators.extractive_generator`` for ``examples.rag.generators.extractive_generator``: module and name."""
    return ".".join(dotted.replace(":", ".").split(".")[-2:])


def variant_params(compiled: CompiledVariant) -> dict[str, str]:
    """The params of a combination's child run: short labels a person reads in MLflow's tables.

    An implementation is named by its module and function (``generators.extractive_generator``),
    so MLflow's narrow columns do not cut it to its package. The full provenance
    (dotted paths, resource requests, environment specs and locks) is the run's
    ``provenance.json`` artifact; no param is longer than 250 characters.
    """
    provenance = compiled.provenance()
    params = {
        "variant": compiled.label,
        "workflow_variant": compiled.choice.workflow,
        "project_version": str(provenance["project_version"]),
    }
    for node, info in provenance["nodes"].items():
        params[f"variant.{node}"] = compiled.choice.variant_of(node)
        params[f"node.{node}.implementation"] = _short_name(str(info["implementation"]))
        params[f"node.{node}.version"] = info["version"]
        params[f"node.{node}.resources"] = _resources_label(info["resources"] or {})
        params[f"node.{node}.environment"] = _environment_label(info["environment"])
    return {_key(k): _param(v) for k, v in params.items()}


def run_metrics(figures: dict[str, float]) -> dict[str, float]:
    """A combination's figures under the names MLflow shows: one metric per quantity.

    A mean goes under the quantity's own name (``exact_match``, ``latency_s``),
    its interval bounds and percentiles beside it (``exact_match.ci95_low``,
    ``latency_s.p50``); the number of cases is a param, not a metric.
    """
    return {_key(k.removesuffix(".mean")): float(v) for k, v in figures.items() if k != "cases"}


def cost_totals(results: Iterable[ExecutionResult]) -> dict[str, float]:
    """What a group of executions spent and saved in all, as MLflow metrics (none when no node called a model).

    ``spent_usd.total``, ``saved_usd.total``, ``tokens.<kind>.total`` and ``llm_calls.total``
    beside the per-case means ``cost_usd``, ``saved_usd`` and ``tokens.<kind>``, and
    ``usd_per_passed_case`` (what was spent over the executions that completed).
    """
    results = list(results)
    if not any(n.usage or n.saved_usage for r in results for n in r.nodes):
        return {}
    spent = sum(r.cost_usd for r in results)
    totals = {"spent_usd.total": spent, "saved_usd.total": sum(r.saved_usd for r in results)}
    for result in results:
        for counts in result.usage.values():
            for kind, n in counts.items():
                key = "llm_calls.total" if kind == "calls" else f"tokens.{kind}.total"
                totals[key] = totals.get(key, 0.0) + float(n)
    passed = sum(1 for r in results if r.ok)
    if passed:
        totals["usd_per_passed_case"] = spent / passed
    return totals


def _case_row(result: ExecutionResult) -> dict[str, Any]:
    row = {k: v for k, v in result.row().items()}
    row["input"] = _param(result.initial_state)
    row["expected"] = _param(result.expected) if result.expected is not None else ""
    row["output"] = _param(result.final_state)[:2000]
    for name, value in result.metrics.items():
        if name.startswith(("node.", "total.")) and not name.endswith(".latency_s"):
            row[name] = value
    return row


def _table(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Rows as MLflow's column dict; a cell a row lacks is None.

    Dots in column names become ``_``: MLflow's table viewer reads a dotted
    name as a path into the row and shows an empty column.
    """
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    return {c.replace(".", "_"): [row.get(c) for row in rows] for c in columns}


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class MlflowObserver(BatchObserver):
    """Records one batch: parent run at the start, child runs' figures and tables at the end."""

    def __init__(self, settings: WTBSettings | None = None) -> None:
        self.settings = settings or get_settings()
        self.uri = tracking_uri(self.settings)
        self.experiment_id: str | None = None
        self.parent_run_id: str | None = None
        self.child_run_ids: dict[str, str] = {}
        self._client: MlflowClient | None = None
        self._setup: threading.Thread | None = None
        self._setup_error: BaseException | None = None

    def on_batch_start(self, plan: BatchPlan) -> None:
        # Importing MLflow and setting its runs up takes seconds: done in a
        # thread while the batch runs; on_batch_end waits for it.
        from prefect.context import FlowRunContext

        flow_ctx = FlowRunContext.get()  # read here: the thread has no flow run context
        flow_run = (str(flow_ctx.flow_run.id), flow_ctx.flow_run.name) if flow_ctx and flow_ctx.flow_run else None
        self._setup = threading.Thread(
            target=self._set_up_safely, args=(plan, flow_run), name="wtb-mlflow-setup", daemon=True
        )
        _pending.add(self._setup)
        self._setup.start()

    def _set_up_safely(self, plan: BatchPlan, flow_run: tuple[str, str] | None) -> None:
        try:
            self._set_up(plan, flow_run)
        except BaseException as exc:  # raised again in on_batch_end, in the flow's thread
            self._setup_error = exc
        finally:
            _pending.discard(threading.current_thread())

    def _set_up(self, plan: BatchPlan, flow_run: tuple[str, str] | None) -> None:
        from mlflow.entities import Param

        client = mlflow_client(self.uri)
        experiment_id = self.experiment_id = _experiment_id(client, plan.project.name, artifact_root(self.settings))
        tags = {"wtb.project": plan.project.name, "wtb.batch_id": plan.batch_id, "wtb.kind": "batch"}
        if flow_run is not None:
            tags["prefect.flow_run_id"], tags["prefect.flow_run_name"] = flow_run
        parent = client.create_run(experiment_id, tags=tags, run_name=f"batch {plan.batch_id}")
        self.parent_run_id = parent.info.run_id
        parent_params = {
            "project": plan.project.name,
            "project_version": plan.project.version,
            "batch_id": plan.batch_id,
            "variant_combinations": len(plan.variants),
            "test_cases": len(plan.items) // max(len(plan.variants), 1),
            "mode": plan.mode,
            "concurrency": plan.concurrency,
        }
        client.log_batch(self.parent_run_id, params=[Param(k, _param(v)) for k, v in parent_params.items()])
        for compiled in plan.variants:
            child = client.create_run(
                experiment_id,
                tags={
                    **tags,
                    "wtb.kind": "variant",
                    "wtb.variant": compiled.label,
                    "mlflow.parentRunId": self.parent_run_id,
                },
                run_name=compiled.label,
            )
            self.child_run_ids[compiled.label] = child.info.run_id
            params = [Param(k, v) for k, v in variant_params(compiled).items()]
            params.append(Param("cases", str(len(plan.items) // max(len(plan.variants), 1))))
            for chunk in _chunks(params, 100):
                client.log_batch(child.info.run_id, params=chunk)
            client.log_dict(child.info.run_id, compiled.provenance(), "provenance.json")
        self._client = client

    def _wait_for_setup(self) -> None:
        """Wait for the background set-up; raise what it raised."""
        if self._setup is not None:
            self._setup.join()
            self._setup = None
        if self._setup_error is not None:
            error, self._setup_error = self._setup_error, None
            raise error

    def on_batch_end(self, plan: BatchPlan, batch: BatchTestResult) -> None:
        self._wait_for_setup()
        from mlflow.entities import Metric

        client = self._client
        if client is None or self.parent_run_id is None:
            return
        now = int(time.time() * 1000)
        groups = batch.by_variant()
        case_rows = {r.execution_id: _case_row(r) for r in batch.results}  # each row built once
        glance = None
        if batch.results:
            from wtb_prefect.analysis.glance import one_glance

            glance = one_glance(batch)
        lead = _lead_metric(glance)
        for label, run_id in self.child_run_ids.items():
            results = groups.get(label, [])
            figures = aggregate_metrics(results)
            named = run_metrics(figures)
            named.update({_key(k): v for k, v in cost_totals(results).items()})
            # MLflow's compare view plots the first metric a run logged: the one that tells the variants apart
            order = sorted(named, key=lambda k: k != lead)
            metrics = [Metric(k, named[k], now, 0) for k in order]
            for chunk in _chunks(metrics, 1000):
                client.log_batch(run_id, metrics=chunk)
            if results:
                client.log_table(run_id, _table([case_rows[r.execution_id] for r in results]), "cases.json")
            all_failed = bool(results) and figures.get("error_rate") == 1.0
            client.set_terminated(run_id, "FAILED" if all_failed else "FINISHED")
        overall = {
            "executions": float(len(batch)),
            "failed": float(len(batch.failed)),
            "duration_s": batch.duration_s,
        }
        overall.update({k: v for k, v in cost_totals(batch.results).items() if k.endswith("_usd.total")})
        calls = batch.tracking.get("node_calls") or {}
        overall.update(
            {f"node_calls.{k}": float(calls[k]) for k in ("computed", "reused", "shared", "cached") if k in calls}
        )
        if "time_saved_s" in calls:
            overall["node_time_saved_s"] = float(calls["time_saved_s"])
        client.log_batch(self.parent_run_id, metrics=[Metric(k, v, now, 0) for k, v in overall.items()])
        if glance is not None:  # the run's description in MLflow's UI: the one-glance answer
            client.set_tag(self.parent_run_id, "mlflow.note.content", glance.markdown()[:5000])
            client.set_tag(self.parent_run_id, "wtb.answer", _param(glance.answer))
        if batch.results:
            client.log_table(self.parent_run_id, _table(list(case_rows.values())), "cases.json")
        if len(groups) > 1:
            from wtb_prefect.analysis.comparison import comparison_table

            client.log_table(self.parent_run_id, _table(comparison_table(batch)), "comparison.json")
            _log_paired_analysis(client, self.parent_run_id, self.child_run_ids, batch, now)
        from wtb_prefect.integrations.previous_run import log_previous

        log_previous(client, self.parent_run_id, self.child_run_ids, batch, now)  # a deployment run's drift
        client.set_terminated(self.parent_run_id, "FINISHED")
        batch.tracking["mlflow"] = {
            "tracking_uri": self.uri,
            "experiment_id": self.experiment_id,
            "parent_run_id": self.parent_run_id,
            "child_run_ids": dict(self.child_run_ids),
        }


def _lead_metric(glance: Any) -> str | None:
    """The MLflow name of the glance column whose means differ most between the variants (None when none differs)."""
    if glance is None:
        return None
    best, spread = None, 0.0
    for column in glance.columns:
        means = [glance.cell(v, column.metric).mean for v in glance.variants]
        values = [m for m in means if m is not None]
        if len(values) < 2:
            continue
        scale = max(abs(x) for x in values) or 1.0
        width = (max(values) - min(values)) / scale
        if width > spread + 1e-12:
            best, spread = column.metric, width
    if best is None:
        return None
    return {"success": "success_rate", "error": "error_rate"}.get(best, _key(best))


def _log_paired_analysis(
    client: MlflowClient, parent_run_id: str, child_run_ids: dict[str, str], batch: BatchTestResult, now: int
) -> None:
    """The paired analysis against the first combination: verdicts, judges and the forest plot.

    Verdicts are tags in words on the variant's run (``verdict.<metric>`` =
    ``better``, ``worse``, ``no detectable difference`` or ``too few cases``),
    and metrics 1 (better), 0 (no detectable difference) or -1 (worse), "too
    few cases" left out: ``verdict.<metric>.<variant>`` on the parent run and
    ``verdict.<metric>`` on the variant's run. A comparative evaluator's
    ``judge.<name>.win_rate`` (and tie, loss, their intervals, mean score) go
    on the variant's run and ``pairwise.json`` on the parent; the forest plot
    PNG is an artifact of the parent run.
    """
    from mlflow.entities import Metric

    parent: list[Metric] = []
    for c in batch.analysis().comparisons:  # the verdicts in words, beside their codes
        if c.variant in child_run_ids:
            client.set_tag(child_run_ids[c.variant], _key(f"verdict.{c.metric}"), c.verdict)
    for variant, codes in batch.analysis().verdict_metrics().items():
        parent += [Metric(_key(f"{name}.{variant}"), code, now, 0) for name, code in codes.items()]
        if variant in child_run_ids:
            client.log_batch(child_run_ids[variant], metrics=[Metric(_key(k), v, now, 0) for k, v in codes.items()])
    for chunk in _chunks(parent, 1000):
        client.log_batch(parent_run_id, metrics=chunk)
    rows = []
    for judged in batch.pairwise:
        figures = {
            "win_rate": judged.win_rate,
            "tie_rate": judged.tie_rate,
            "loss_rate": judged.loss_rate,
            "win_rate.ci95_low": judged.win_ci[0],
            "win_rate.ci95_high": judged.win_ci[1],
            "loss_rate.ci95_low": judged.loss_ci[0],
            "loss_rate.ci95_high": judged.loss_ci[1],
            "mean_score": judged.mean_score,
            "p_value": judged.p_value,
            "cases": float(judged.n),
        }
        rows.append({"variant": judged.variant, "baseline": judged.baseline, "judge": judged.judge, **figures})
        if judged.variant in child_run_ids:
            metrics = [Metric(_key(f"judge.{judged.judge}.{k}"), float(v), now, 0) for k, v in figures.items()]
            client.log_batch(child_run_ids[judged.variant], metrics=metrics)
    if rows:
        client.log_table(parent_run_id, _table(rows), "pairwise.json")
    if batch.forest_plot and Path(batch.forest_plot).is_file():
        client.log_artifact(parent_run_id, batch.forest_plot)


def _mlflow_factory(plan: BatchPlan) -> BatchObserver | None:
    from wtb_prefect.integrations.scope import is_single_run

    settings = get_settings()
    if not settings.mlflow_enabled or (is_single_run() and not settings.mlflow_single_runs):
        return None  # a single run is no batch: no parent run, unless WTB_MLFLOW_SINGLE_RUNS asks for one
    return MlflowObserver(settings)


register_observer_factory(_mlflow_factory)
