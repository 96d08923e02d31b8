"""Tables and messages the commands print: comparisons, verdicts, node calls, links."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import sys
from collections.abc import Iterator
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


def _width(table: Table) -> int:
    from rich.measure import Measurement

    return Measurement.get(console, console.options.update(width=10_000), table).maximum


def _transposed(table: Table) -> Table:
    """``table`` with its rows as columns: a few variants by many metrics reads better this way in a narrow terminal."""
    from rich import box

    headings = [str(c.header).replace("\n", " ") for c in table.columns]
    cells = [[str(cell) for cell in c._cells] for c in table.columns]
    flipped = Table(title=table.title, box=box.SIMPLE_HEAD, pad_edge=False)
    flipped.add_column(headings[0], no_wrap=True)
    for name in cells[0]:
        flipped.add_column(name, justify="right", overflow="fold")
    for heading, column in zip(headings[1:], cells[1:], strict=True):
        flipped.add_row(heading, *column)
    return flipped


def print_table(table: Table) -> None:
    """Print ``table`` within the terminal's width: as it is, else transposed, else with its cells folded.

    Every line fits the terminal (the full detail of a batch is in its report).
    """
    if _width(table) > console.width and table.columns:
        flipped = _transposed(table)
        if _width(flipped) <= console.width:
            table = flipped
    console.print(table)


def print_glance(batch: Any, baseline: str | None = None) -> None:
    """The batch's one-glance answer: the variant to pick in one sentence, and variants x metrics with verdict marks."""
    from rich.markup import escape

    from wtb_prefect.analysis.glance import LEGEND, one_glance

    glance = one_glance(batch, baseline)
    table = Table(box=None, pad_edge=False, title=None)
    table.add_column("variant", overflow="fold")
    for column in glance.columns:
        table.add_column(column.heading, justify="right", no_wrap=True)
    colours = {"better": "green", "worse": "red"}
    for variant in glance.variants:
        cells = []
        for column in glance.columns:
            c = glance.cell(variant, column.metric)
            text = escape(c.text(column.digits))
            colour = colours.get(c.verdict)
            text = f"[{colour}]{text}[/{colour}]" if colour else text
            cells.append(f"[bold]{text}[/bold]" if c.best else text)
        table.add_row(escape(variant) + (" (baseline)" if variant == glance.baseline else ""), *cells)
    console.print(escape(glance.answer), style="bold", highlight=False)
    print_table(table)
    console.print(f"{LEGEND}; bold: the best, told apart from the rest", style="dim", highlight=False)


class _AboveBar(io.TextIOBase):
    """A text stream writing to ``stream`` (rich's redirected stderr), which a rich console does not unwrap."""

    def __init__(self, stream: Any) -> None:
        super().__init__()
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(text)
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._stream.fileno()


@contextlib.contextmanager
def progress_bar(*columns: Any) -> Iterator[Any]:
    """A rich progress bar on the CLI's console with every log line printed above it, never on its line.

    Log handlers write to the stream they were given when made (Prefect's
    console handler to its own rich console on the original stderr), past
    rich's redirection of ``sys.stderr``; for the bar's lifetime they write to
    the redirected stream, which prints each line above the bar. A rich
    console given rich's redirected stream unwraps it back to the terminal
    (``Console.file`` follows ``rich_proxied_file``), so it is given
    :class:`_AboveBar` around it instead.
    """
    from rich.progress import Progress

    with Progress(*columns, console=console) as progress:
        swapped: list[tuple[Any, str, Any]] = []
        if console.is_terminal:
            loggers = [logging.getLogger()] + [
                lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
            ]
            for handler in {h for lg in loggers for h in lg.handlers}:
                inner = getattr(handler, "console", None)
                if isinstance(inner, Console):
                    swapped.append((inner, "file", inner._file))
                    inner.file = _AboveBar(sys.stderr)
                elif isinstance(handler, logging.StreamHandler) and handler.stream in (sys.__stderr__, sys.__stdout__):
                    swapped.append((handler, "stream", handler.stream))
                    handler.setStream(sys.stderr)
        try:
            yield progress
        finally:
            for owner, attribute, value in swapped:
                if attribute == "file":
                    owner.file = value
                else:
                    owner.setStream(value)


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
        print_location("Forest plot", str(batch.forest_plot))


def print_location(label: str, location: str) -> None:
    """``label: location`` on one line when it fits the terminal, else the location on its own line below.

    A path or address is never broken by wrapping, so it can be copied or clicked whole.
    """
    line = f"{label}: {location}"
    if len(line) <= console.width:
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    else:
        console.print(f"{label}:", highlight=False, markup=False)
        console.print(f"  {location}", highlight=False, markup=False, soft_wrap=True)


def print_command(command: str, indent: int = 2) -> None:
    """A shell command, indented; one too wide for the terminal is continued over lines at its options."""
    pad = " " * indent
    if indent + len(command) <= console.width:
        console.print(pad + command, highlight=False, markup=False, soft_wrap=True)
        return
    head, *options = command.split(" --")
    lines = [head, *(f"    --{option}" for option in options)]
    console.print(" \\\n".join(pad + line for line in lines), highlight=False, markup=False, soft_wrap=True)


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
