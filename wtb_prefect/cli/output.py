"""Tables and messages the commands print: comparisons, verdicts, node calls, links."""

from __future__ import annotations

import json
import os
from typing import Any

from rich.console import Console
from rich.table import Table

from wtb_prefect.cli.root import console

_HEADINGS = {"cases": "n", "success_rate": "ok", "latency_p50_s": "latency s\np50"}


def _heading(column: str) -> str:
    heading = _HEADINGS.get(column) or column.removeprefix("total.").replace("_", " ")
    return heading.removesuffix(" p50") + "\np50" if heading.endswith(" p50") else heading


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"
    return str(value)


def comparison_table(rows: list[dict[str, Any]], title: str) -> Table:
    """A rich table of summary rows, compact enough for an 80-column terminal."""
    from rich import box

    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    for column in columns:
        if column == "variant":
            table.add_column("variant", no_wrap=True)
        else:
            table.add_column(_heading(column), justify="right")
    for row in rows:
        table.add_row(*[_cell(row.get(c)) for c in columns])
    return table


def print_table(table: Table) -> None:
    """Print ``table`` whole: never squeezed or cropped to a narrow terminal or a pipe's 80 columns."""
    from rich.measure import Measurement

    needed = Measurement.get(console, console.options.update(width=1000), table).maximum
    if needed <= console.width:
        console.print(table)
    else:
        Console(file=console.file, width=needed, force_terminal=console.is_terminal).print(table)


def print_verdicts(batch: Any) -> None:
    """Each variant against the first combination: verdict, difference and interval per metric; the plot's path."""
    if len(batch.by_variant()) < 2:
        return
    analysis = batch.analysis()
    metrics = list(dict.fromkeys(c.metric for c in analysis.comparisons))
    corrected = {"holm": "Holm-corrected", "bh": "Benjamini-Hochberg-corrected"}.get(analysis.correction, "uncorrected")
    table = Table(
        title=f"Verdicts against {analysis.baseline} (paired by case, {corrected} over the batch's tests; "
        f"difference [{analysis.interval}, its level set by the correction])"
    )
    table.add_column("variant")
    for metric in metrics:
        table.add_column(metric)
    colours = {"better": "green", "worse": "red"}
    for variant in dict.fromkeys(c.variant for c in analysis.comparisons):
        cells = []
        for metric in metrics:
            c = next((c for c in analysis.rows(metric) if c.variant == variant), None)
            if c is None or c.difference is None:
                cells.append("")
                continue
            text = f"{c.verdict} {c.difference:+.3g} [{c.ci_low:.3g}, {c.ci_high:.3g}]"
            if c.verdict == "no detectable difference" and c.mde is not None:
                text += f" (mde {c.mde:.2g})"
            colour = colours.get(c.verdict)
            cells.append(f"[{colour}]{text}[/{colour}]" if colour else text)
        table.add_row(variant, *cells)
    print_table(table)
    for judged in batch.pairwise:
        console.print(
            f"{judged.judge}: {judged.variant} vs {judged.baseline} win/tie/loss "
            f"{judged.win_rate:.2f}/{judged.tie_rate:.2f}/{judged.loss_rate:.2f} (p={judged.p_value:.3g})",
            highlight=False,
        )
    if batch.forest_plot:
        console.print(f"Forest plot: {batch.forest_plot}", highlight=False, soft_wrap=True)


def as_json(value: Any) -> str:
    """``value`` (a pydantic model or plain data) as indented JSON."""
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json")
    return json.dumps(value, indent=2, default=str, ensure_ascii=False)


def print_ui_link(flow_run_id: str | None) -> None:
    """Print the flow run's address in the Prefect UI, when the API is known."""
    api = os.environ.get("PREFECT_API_URL") or ""
    if flow_run_id and api:
        console.print(f"Flow run: {api.removesuffix('/api')}/runs/flow-run/{flow_run_id}")


def print_node_calls(result: Any) -> None:
    """Print how a batch's node calls were resolved (computed, shared, cached) and any uncacheable node."""
    calls = result.tracking.get("node_calls")
    if calls and calls.get("reused"):
        console.print(
            f"node calls: {calls['computed']} computed, {calls['reused']} reused "
            f"({calls['shared']} shared in the batch, {calls['cached']} from the cache); "
            f"node time saved {calls['time_saved_s']:.1f} s",
            highlight=False,
        )
    for error in (calls or {}).get("uncacheable", []):
        console.print(f"[yellow]{error}[/yellow]", highlight=False)


def summary_rows(result: Any, baseline: str | None) -> list[dict[str, Any]]:
    """The batch's comparison rows against ``baseline``."""
    from wtb_prefect.analysis.comparison import comparison_table as rows

    return rows(result, baseline)
