"""The race of a raced batch, shown where its other results are: a Prefect table and MLflow.

A batch run with ``race=`` carries its outcome in ``batch.tracking["race"]``
(:mod:`wtb_prefect.batch.race`). This observer publishes it when the batch
ends: a Prefect table artifact (variant, status, dropped after N cases,
verdict, node calls, the difference to the baseline with its confidence
sequence at the last look) with the decision's cost against the full matrix's in its
description, and the same table, cost metrics and verdict tags on the batch's
MLflow parent run (after the MLflow observer has created it), with the race's
plot (``race.png``: each variant's confidence sequence over cases) as an artifact.
:func:`race_html` is the same table and plot as the report's "Race" section.
"""

from __future__ import annotations

import base64
import html
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wtb_prefect.batch.gate import artifact_key
from wtb_prefect.batch.observers import BatchObserver, register_observer_factory
from wtb_prefect.services.prefect_outage import best_effort

if TYPE_CHECKING:
    from wtb_prefect.analysis.batch_result import BatchTestResult
    from wtb_prefect.batch.plan import BatchPlan

__all__ = ["RaceTableObserver", "cost_line", "race_html", "race_rows"]

logger = logging.getLogger(__name__)


def _last_interval(race: dict[str, Any], variant: str) -> str:
    """The variant's difference to the baseline at the race's last look, with its confidence sequence there."""
    seq = next((s for s in race.get("sequences") or [] if s["variant"] == variant), None)
    if seq is None or not seq.get("mean"):
        return ""

    def bound(x: float | None) -> str:
        return "unbounded" if x is None else f"{x:+.3f}"

    return f"{seq['mean'][-1]:+.3f} [{bound(seq['lower'][-1])}, {bound(seq['upper'][-1])}] after {len(seq['mean'])}"


def race_rows(race: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per variant: status, dropped after N cases, the verdict in words, node calls, mean,
    and its difference to the baseline with the confidence sequence at the last look."""
    against = next((s["against"] for s in race.get("sequences") or []), None)
    column = f"minus {against} (sequence)" if against else "minus baseline (sequence)"
    return [
        {
            "variant": v["variant"],
            "status": v["status"],
            "dropped after": "" if v.get("dropped_after") is None else f"{v['dropped_after']} cases",
            "verdict": v["verdict"],
            "node calls": v.get("node_calls"),
            "mean": v.get("mean"),
            column: _last_interval(race, v["variant"]),
        }
        for v in race.get("verdicts", [])
    ]


def cost_line(race: dict[str, Any]) -> str:
    """The decision's cost against the full matrix's, in one sentence."""
    cost = race["cost"]
    share = cost["node_calls"] / cost["full_node_calls"] if cost.get("full_node_calls") else 1.0
    line = (
        f"{cost['node_calls']} node calls of the full matrix's {cost['full_node_calls']} ({share:.0%}), "
        f"{cost['node_seconds']:.1f} s of {cost['full_node_seconds']:.1f} s node time"
    )
    if "dollars" in cost:
        line += f", ${cost['dollars']:.4f} of ${cost['full_dollars']:.4f}"
    return line


def _title(race: dict[str, Any]) -> str:
    return (
        f"race on {race['primary_metric']} (goal {race['goal']}, alpha {race['alpha']:g}, "
        f"epsilon {race['epsilon']:g}; {race['kind']} verdicts, "
        f"{'decided' if race.get('decided') else 'not decided when the cases ran out'})"
    )


def race_html(batch: BatchTestResult) -> str:
    """The report's "Race" section as HTML: what the race decided, for what share of the full matrix's
    calls, the table of :func:`race_rows` and the plot (embedded); empty for a batch that was not raced."""
    race = batch.tracking.get("race")
    if not isinstance(race, dict) or not race.get("verdicts"):
        return ""
    rows = race_rows(race)
    head = "".join(f"<th>{html.escape(key)}</th>" for key in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape('' if v is None else _cell(v))}</td>" for v in row.values()) + "</tr>"
        for row in rows
    )
    plot = ""
    path = Path(race["plot"]) if race.get("plot") else None
    if path is not None and path.is_file():
        data = base64.b64encode(path.read_bytes()).decode()
        plot = f"<img id='race-plot' alt='each variant minus the baseline over cases, with its confidence sequence' src='data:image/png;base64,{data}'>"
    return (
        f"<h2 id='race'>Race</h2><p>{html.escape(_title(race))}: {html.escape(cost_line(race))}.</p>"
        f"<div class='wide'><table class='comparison race'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"
        + plot
    )


def _cell(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


class RaceTableObserver(BatchObserver):
    """Publishes a raced batch's race table to the Prefect UI and to its MLflow parent run."""

    batch_end_after = ("MlflowObserver",)  # the parent run exists (and is named in tracking) by then

    def on_batch_end(self, plan: BatchPlan, batch: BatchTestResult) -> None:
        race = batch.tracking.get("race")
        if not race:
            return
        from prefect.artifacts import create_table_artifact

        best_effort(
            "race artifact",
            create_table_artifact,
            key=artifact_key(batch.project, "race"),
            table=race_rows(race),
            description=f"Batch {batch.batch_id}, {_title(race)}: {cost_line(race)}"
            + (f". Confidence sequences over cases: {race['plot']}" if race.get("plot") else ""),
        )
        self._log_mlflow(batch, race)

    @staticmethod
    def _log_mlflow(batch: BatchTestResult, race: dict[str, Any]) -> None:
        tracked = batch.tracking.get("mlflow")
        if not isinstance(tracked, dict) or not tracked.get("parent_run_id"):
            return
        from mlflow import MlflowClient
        from mlflow.entities import Metric, RunTag

        client = MlflowClient(tracking_uri=tracked["tracking_uri"])
        run_id = tracked["parent_run_id"]
        rows = race_rows(race)
        client.log_table(run_id, {key: [row[key] for row in rows] for key in rows[0]} if rows else {}, "race.json")
        cost = race["cost"]
        now = int(time.time() * 1000)
        metrics = [
            Metric(f"race.{key}", float(cost[key]), now, 0)
            for key in ("node_calls", "full_node_calls", "node_seconds", "full_node_seconds", "dollars", "full_dollars")
            if key in cost
        ]
        tags = [RunTag("race", _title(race)), RunTag("race.cost", cost_line(race))]
        client.log_batch(run_id, metrics=metrics, tags=tags)
        if race.get("plot"):
            client.log_artifact(run_id, race["plot"])  # race.png: each variant's confidence sequence over cases
        for label, child in (tracked.get("child_run_ids") or {}).items():
            verdict = next((v for v in race.get("verdicts", []) if v["variant"] == label), None)
            if verdict is not None:
                client.set_tag(child, "race.verdict", f"{verdict['status']}: {verdict['verdict']}")


register_observer_factory(lambda plan: RaceTableObserver() if plan.race is not None else None)
