"""How a deployment run shows its drift since the previous run: summary lines, report table, MLflow.

The comparison itself is made by the batch (:mod:`wtb_prefect.batch.previous`)
and kept as ``batch.tracking["previous"]``; these helpers only present it.
A batch outside a deployment has none, and shows nothing.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from wtb_prefect.batch.previous import PreviousRunComparison

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from wtb_prefect.analysis.batch_result import BatchTestResult

__all__ = ["log_previous", "previous_comparison", "previous_html", "previous_markdown"]

_SYMBOLS = {
    "better": "▲ better",
    "worse": "▼ worse",
    "no detectable difference": "= no difference",
    "too few cases": "too few cases",
}


def previous_comparison(batch: BatchTestResult) -> PreviousRunComparison | None:
    """The batch's comparison with the previous run of its deployment, if it was made."""
    comparison = batch.tracking.get("previous")
    return comparison if isinstance(comparison, PreviousRunComparison) else None


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _value(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def previous_markdown(batch: BatchTestResult) -> list[str]:
    """The summary's "Against the previous run" section (empty outside a deployment)."""
    comparison = previous_comparison(batch)
    if comparison is None:
        return []
    lines = ["**Against the previous run**", ""]
    if not comparison.found:
        return [*lines, f"_{_cell(comparison.note)}_", ""]
    worse = comparison.worse()
    lines += [
        f"Each variant against itself in flow run `{comparison.flow_run_name}` (batch `{comparison.batch_id}`), "
        "paired by case; verdicts corrected over these tests"
        + (f" · **{len(worse)} worse**" if worse else " · nothing worse"),
        "",
        "| variant | metric | pairs | previous | now | change | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in comparison.comparisons:
        change = "–" if c.difference is None else f"{c.difference:+.3f}"
        lines.append(
            f"| {_cell(c.variant)} | {_cell(c.metric)} | {c.n} | {_value(c.baseline_value)} | {_value(c.value)} "
            f"| {change} | {_SYMBOLS.get(c.verdict, c.verdict)} |"
        )
    if comparison.new_variants:
        lines += ["", "New since then: " + ", ".join(f"`{_cell(v)}`" for v in comparison.new_variants)]
    return [*lines, ""]


def previous_html(batch: BatchTestResult) -> str:
    """The report's "Against the previous run" section as HTML (empty outside a deployment)."""
    comparison = previous_comparison(batch)
    if comparison is None:
        return ""
    head = "<h2>Against the previous run</h2>"
    if not comparison.found:
        return f"{head}<p>{html.escape(comparison.note)}</p>"
    rows = []
    for c in comparison.comparisons:
        change = "–" if c.difference is None else f"{c.difference:+.3f}"
        rows.append(
            f"<tr><td>{html.escape(c.variant)}</td><td>{html.escape(c.metric)}</td><td>{c.n}</td>"
            f"<td>{_value(c.baseline_value)}</td><td>{_value(c.value)}</td><td>{change}</td>"
            f"<td class='verdict {c.verdict.replace(' ', '-')}'>{html.escape(c.verdict)}</td></tr>"
        )
    intro = (
        f"<p>Each variant against itself in flow run <code>{html.escape(comparison.flow_run_name or '')}</code> "
        f"(batch <code>{html.escape(comparison.batch_id or '')}</code>), paired by case.</p>"
    )
    table = (
        "<table class='comparison previous'><thead><tr><th>variant</th><th>metric</th><th>pairs</th>"
        "<th>previous</th><th>now</th><th>change</th><th>verdict</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
    return head + intro + table


def log_previous(
    client: MlflowClient, parent_run_id: str, child_run_ids: dict[str, str], batch: BatchTestResult, now: int
) -> None:
    """The drift in MLflow: tags naming the previous run, ``previous.*`` metrics, ``previous.json``.

    Each variant's run gets ``previous.<metric>.change`` (this run minus the
    previous) and ``previous.<metric>.verdict`` (1 better, 0 no detectable
    difference, -1 worse; "too few cases" left out); the parent run gets
    ``previous.worse`` (how many comparisons are worse) and the whole table.
    """
    from mlflow.entities import Metric, RunTag

    from wtb_prefect.analysis.paired import verdict_code

    comparison = previous_comparison(batch)
    if comparison is None:
        return
    if not comparison.found:
        client.set_tag(parent_run_id, "wtb.previous", comparison.note[:500])
        return
    tags = [
        RunTag("wtb.previous.flow_run_id", comparison.flow_run_id or ""),
        RunTag("wtb.previous.batch_id", comparison.batch_id or ""),
    ]
    client.log_batch(
        parent_run_id,
        metrics=[Metric("previous.worse", float(len(comparison.worse())), now, 0)],
        tags=tags,
    )
    by_variant: dict[str, list[Any]] = {}
    for c in comparison.comparisons:
        figures = by_variant.setdefault(c.variant, [])
        if c.difference is not None:
            figures.append(Metric(_key(f"previous.{c.metric}.change"), c.difference, now, 0))
        code = verdict_code(c.verdict)
        if code is not None:
            figures.append(Metric(_key(f"previous.{c.metric}.verdict"), code, now, 0))
    for variant, figures in by_variant.items():
        if variant in child_run_ids:
            client.log_batch(child_run_ids[variant], metrics=figures, tags=tags)
    rows = comparison.rows()
    if rows:
        client.log_table(parent_run_id, {k: [r[k] for r in rows] for k in rows[0]}, "previous.json")


def _key(name: str) -> str:
    """An MLflow metric key: letters, digits and ``_-. /`` only."""
    return "".join(ch if ch.isalnum() or ch in "_-. /" else "_" for ch in name)[:250]
