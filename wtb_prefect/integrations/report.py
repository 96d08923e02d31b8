"""The comparison a person reads: one self-contained HTML page per batch.

:func:`write_report` turns a :class:`~wtb_prefect.BatchTestResult`
into a single HTML file that needs no network to view (inline CSS and
JavaScript, the forest plot as a base64 PNG):

- at the top, the one-glance answer (:func:`wtb_prefect.analysis.glance.one_glance`):
  variants x metrics with verdict marks, and the variant to pick;
- the comparison of every variant combination against the baseline, per
  metric: means, the difference with its confidence interval, the p-value
  and the verdict (better / worse / no detectable difference);
- the forest plot of those differences;
- for a raced batch, the race (:func:`wtb_prefect.integrations.race_table.race_html`):
  each variant's status and verdict, the calls it took against the full
  matrix's, and each variant's confidence sequence over cases;
- a grid of test cases x variant combinations with each output inline, every
  score coloured against the baseline's score on the same case, filters for
  regressions, disagreements and failures (also driven by the URL:
  ``report.html#filter=regressions&page=2``), pages of 50 cases;
  a case's regression and disagreement are decided on its scores (on its
  outputs only where no score exists), never on paths or ids; workspace
  paths in outputs are hidden unless ``show_paths`` asks for them;
- per cell, what its model calls cost (and what reused calls saved), links
  to its Prefect flow and task runs and its MLflow run, and its error when
  it failed; per variant, in the grid's heading, what it spent and saved in
  all (the one-glance table has its mean cost per case);

``wtb report BATCH_ID`` rebuilds a batch from the execution index
(:func:`load_batch`) and writes its report; every batch also writes its
report when it ends (:class:`ReportObserver`), to :func:`report_path`.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import os
import re
import string
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wtb_prefect.analysis.batch_result import BatchTestResult
from wtb_prefect.analysis.comparison import resolve_baseline
from wtb_prefect.analysis.evaluation import lower_is_better
from wtb_prefect.analysis.forest import forest_plot
from wtb_prefect.analysis.glance import LEGEND, Glance, one_glance
from wtb_prefect.analysis.paired import PairedComparison, interval_label
from wtb_prefect.batch.analysis import forest_plot_path
from wtb_prefect.errors import ConfigError
from wtb_prefect.integrations.previous_run import previous_html
from wtb_prefect.integrations.race_table import race_html
from wtb_prefect.results import ErrorInfo, ExecutionResult
from wtb_prefect.settings import WTBSettings, get_settings

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = [
    "ReportLinks",
    "verdicts_and_plot",
    "error_summary",
    "find_links",
    "load_batch",
    "render_report",
    "report_path",
    "write_report",
]

logger = logging.getLogger(__name__)

MLFLOW_UI_DEFAULT = "http://127.0.0.1:5000"
"""Where ``mlflow ui`` serves by default; the report links MLflow runs there for a local store."""

PAGE_SIZE = 50
_OUTPUT_CHARS = 300  # the output shown in a cell
_STATE_CHARS = 1200  # the final state behind "state"
_TRACEBACK_CHARS = 2000
_TEMPLATE = Path(__file__).with_name("report_page.html")


@dataclass
class ReportLinks:
    """Where the report links to: the Prefect UI and the batch's MLflow runs."""

    prefect_ui: str | None = None
    mlflow_ui: str | None = None
    mlflow_experiment_id: str | None = None
    mlflow_parent_run_id: str | None = None
    mlflow_runs: dict[str, str] = field(default_factory=dict)
    """Variant combination label -> its MLflow child run id."""

    def flow_run(self, flow_run_id: str | None) -> str | None:
        """The Prefect UI page of a flow run."""
        return f"{self.prefect_ui}/runs/flow-run/{flow_run_id}" if self.prefect_ui and flow_run_id else None

    def mlflow_run(self, run_id: str | None) -> str | None:
        """The MLflow UI page of a run."""
        if not (self.mlflow_ui and self.mlflow_experiment_id and run_id):
            return None
        return f"{self.mlflow_ui}/#/experiments/{self.mlflow_experiment_id}/runs/{run_id}"


# ─── statistics: the one call site ───


def verdicts_and_plot(
    batch: BatchTestResult, baseline: str | None = None
) -> tuple[list[PairedComparison], bytes | None]:
    """The verdicts of every combination against ``baseline`` and the forest plot (PNG bytes).

    The paired analysis of :meth:`BatchTestResult.analysis` (success, the nodes'
    own run time and every evaluator score, p-values Holm-corrected over the
    batch; "too few cases" below its minimum of pairs) and its forest plot
    (:func:`wtb_prefect.analysis.forest.forest_plot`): the one saved with the
    batch when there is one for this baseline, else drawn now.
    """
    base = resolve_baseline(batch, baseline)
    comparisons = batch.analysis(base).comparisons
    verdicts = list(comparisons)
    if not comparisons:
        return verdicts, None
    saved = Path(batch.forest_plot) if batch.forest_plot else forest_plot_path(batch.project, batch.batch_id)
    if base == resolve_baseline(batch, None) and saved.is_file():
        return verdicts, saved.read_bytes()
    with tempfile.TemporaryDirectory() as folder:
        return verdicts, forest_plot(comparisons, Path(folder) / "forest.png").read_bytes()


# ─── the grid ───


def _plain(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return value


def _text(value: Any) -> str:
    value = _plain(value)
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str, sort_keys=isinstance(value, dict))


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


_PATH = re.compile(r"(?:[A-Za-z]:)?[\\/][^\s\"',;]*[\\/][^\s\"',;]*")
"""An absolute file path (POSIX or Windows): where an execution wrote, different in every execution."""


def _is_path(value: Any) -> bool:
    return isinstance(value, str) and _PATH.fullmatch(value.strip()) is not None


def _without_paths(value: Any) -> Any:
    """``value`` with the fields that hold a file path dropped (they name an execution's workspace)."""
    value = _plain(value)
    if isinstance(value, dict):
        return {k: _without_paths(v) for k, v in value.items() if not _is_path(v)}
    if isinstance(value, list):
        return [_without_paths(v) for v in value if not _is_path(v)]
    return value


def _output(result: ExecutionResult, paths: bool = False) -> str:
    """What a cell shows: the state fields the last node wrote (else every field that changed).

    Fields holding a file path are left out unless ``paths``.
    """
    state = _plain(result.final_state)
    if not isinstance(state, dict):
        return "" if state is None else _text(state)
    if not paths:
        state = _without_paths(state)
    last = next(
        (r.output for r in reversed(result.nodes) if r.status == "completed" and isinstance(r.output, dict)), None
    )
    keys = [k for k in (last or {}) if k in state]
    if not keys:
        initial = _plain(result.initial_state) or {}
        keys = [k for k, v in state.items() if initial.get(k) != v]
    if len(keys) == 1:
        return _text(state[keys[0]])
    return "\n".join(f"{k}: {_text(state[k])}" for k in keys)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def error_summary(error: ErrorInfo) -> str:
    """``Type in node 'n': message`` on one line; a Ray task error shows the remote exception, not Ray's wrapper."""
    message = _ANSI.sub("", error.message).strip()
    kind = error.type
    wrapped = re.fullmatch(r"RayTaskError\((\w+)\)", kind)
    if wrapped:
        kind = wrapped.group(1)
        last = [line.strip() for line in message.splitlines() if line.strip()]
        if last:
            message = last[-1].removeprefix(f"{kind}: ")
    where = f" in node {error.node!r}" if error.node else ""
    return f"{kind}{where}: {message}"


def _better(metric: str, value: float, base: float) -> str:
    if abs(value - base) <= 1e-12 * max(1.0, abs(base)):
        return "same"
    higher = value > base
    return "worse" if higher == lower_is_better(metric) else "better"


def _cell(result: ExecutionResult, base: ExecutionResult | None, is_base: bool, paths: bool) -> dict[str, Any]:
    state = result.final_state if paths else _without_paths(result.final_state)
    cell: dict[str, Any] = {
        "s": result.status,
        "o": _short(_output(result, paths), _OUTPUT_CHARS),
        "f": _short(_text(state), _STATE_CHARS),
        "sc": {k: round(v, 4) for k, v in result.scores.items()},
        "l": round(result.duration_s, 3),
        "x": result.execution_id,
        "fr": result.flow_run_id,
        "t": [[n.node, n.task_run_id, n.status] for n in result.nodes if n.task_run_id],
    }
    if any(n.usage or n.saved_usage for n in result.nodes):  # a node called a chat model
        cell["c"] = round(result.cost_usd, 6)
        if result.saved_usd:
            cell["sv"] = round(result.saved_usd, 6)
    if base is not None and not is_base and base.ok and result.ok:
        cell["d"] = {k: _better(k, v, base.scores[k]) for k, v in result.scores.items() if k in base.scores}
    if result.error is not None:
        details = _ANSI.sub("", "\n".join(filter(None, [result.error.message, result.error.traceback])))
        cell["e"] = {"text": _short(error_summary(result.error), 600), "tb": _short(details, _TRACEBACK_CHARS)}
    return cell


def _signature(result: ExecutionResult, scored: bool) -> tuple[Any, ...]:
    """What two variants must share to agree on a case: status and scores, or the output where nothing is scored.

    Never a path or an id: those differ between executions that did the same.
    """
    if scored:
        return (result.status, tuple(sorted((k, round(v, 9)) for k, v in result.scores.items())))
    return (result.status, _output(result, paths=False))


def _flags(cells: list[ExecutionResult | None], base_index: int) -> list[str]:
    """How a case's variants differ: regression, improvement, disagreement, failure.

    Decided on scores; on the outputs (paths left out) only when no cell of the case has a score.
    """
    flags: set[str] = set()
    present = [c for c in cells if c is not None]
    base = cells[base_index]
    if any(not c.ok for c in present):
        flags.add("failure")
    scored = any(c.scores for c in present)
    signatures = {_signature(c, scored) for c in present}
    if len(signatures) > 1:
        flags.add("disagreement")
    if base is not None:
        for index, cell in enumerate(cells):
            if index == base_index or cell is None:
                continue
            if base.ok != cell.ok:
                flags.add("regression" if base.ok else "improvement")
                continue
            if not cell.ok:
                continue
            for metric, value in cell.scores.items():
                if metric in base.scores:
                    change = _better(metric, value, base.scores[metric])
                    if change == "worse":
                        flags.add("regression")
                    elif change == "better":
                        flags.add("improvement")
    return sorted(flags)


def _fields(value: Any, paths: bool) -> dict[str, str] | str:
    """A case's input or expected value as ``{field: text}`` (a dict), else its text."""
    value = _plain(value)
    if isinstance(value, dict):
        shown = value if paths else _without_paths(value)
        return {str(k): _short(_text(v), _OUTPUT_CHARS) for k, v in shown.items()}
    return _short(_text(value), _OUTPUT_CHARS)


def grid_data(batch: BatchTestResult, baseline: str, links: ReportLinks, paths: bool = False) -> dict[str, Any]:
    """The grid of cases x variant combinations as the JSON the page renders (file paths shown when ``paths``)."""
    groups = batch.by_variant()
    variants = list(groups)
    base_index = variants.index(baseline)
    by_case: dict[str, list[ExecutionResult | None]] = {}
    for column, label in enumerate(variants):
        for result in groups[label]:
            by_case.setdefault(result.case_id, [None] * len(variants))[column] = result
    cases = []
    for case_id, cells in by_case.items():
        first = next(c for c in cells if c is not None)
        cases.append(
            {
                "id": case_id,
                "in": _fields(first.initial_state, paths),
                "exp": "" if first.expected is None else _fields(first.expected, paths),
                "flags": _flags(cells, base_index),
                "cells": [
                    None if c is None else _cell(c, cells[base_index], i == base_index, paths)
                    for i, c in enumerate(cells)
                ],
            }
        )
    costs = batch.cost()["by_variant"]
    return {
        "variants": variants,
        "baseline": baseline,
        "costs": {  # per variant, only where its nodes called a chat model
            label: {"spent": round(c["spent_usd"], 6), "saved": round(c["saved_usd"], 6)}
            for label, c in costs.items()
            if c
        },
        "scores": sorted({k for r in batch.results for k in r.scores}),
        "cases": cases,
        "prefectUi": links.prefect_ui,
        "mlflowRuns": {label: links.mlflow_run(run_id) for label, run_id in links.mlflow_runs.items()},
        "pageSize": PAGE_SIZE,
    }


# ─── the page ───


def _number(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}f}" if abs(value) < 1000 else f"{value:.0f}"


def _comparison_html(verdicts: list[PairedComparison]) -> str:
    if not verdicts:
        return "<p>Only one variant combination: nothing to compare.</p>"
    head = (  # the verdict right after the names, so a narrow window shows it
        "<tr><th>metric</th><th>variant</th><th>verdict</th><th>pairs</th><th>baseline</th><th>variant</th>"
        f"<th>difference</th><th>{interval_label(v.confidence for v in verdicts)}</th><th>p</th>"
        "<th>p corrected</th><th>test</th></tr>"
    )
    rows = []
    for v in verdicts:
        ci = f"[{_number(v.ci_low)}, {_number(v.ci_high)}]" if v.ci_low is not None else "–"
        p = "–" if v.p_value is None else f"{v.p_value:.3g}"
        adjusted = "–" if v.p_adjusted is None else f"{v.p_adjusted:.3g}"
        difference = "–" if v.difference is None else f"{v.difference:+.3f}"
        css = v.verdict.replace(" ", "-")
        rows.append(
            f"<tr><td>{html.escape(v.metric)}</td><td>{html.escape(v.variant)}</td>"
            f"<td class='verdict {css}'>{html.escape(v.verdict)}</td><td>{v.n}</td>"
            f"<td>{_number(v.baseline_value)}</td><td>{_number(v.value)}</td><td>{difference}</td><td>{ci}</td>"
            f"<td>{p}</td><td>{adjusted}</td><td>{html.escape(v.test)}</td></tr>"
        )
    return (
        f"<div class='wide'><table class='comparison'><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def glance_html(glance: Glance) -> str:
    """The one-glance answer as HTML: the sentence, then variants x metrics with verdict marks (best in bold)."""
    head = "<tr><th>variant</th>" + "".join(f"<th>{html.escape(c.heading)}</th>" for c in glance.columns) + "</tr>"
    rows = []
    for variant in glance.variants:
        label = html.escape(variant) + (" <span class='meta'>baseline</span>" if variant == glance.baseline else "")
        cells = []
        for column in glance.columns:
            c = glance.cell(variant, column.metric)
            css = " ".join(filter(None, ["verdict", c.verdict.replace(" ", "-"), "best" if c.best else ""]))
            title = f" title='{html.escape(c.verdict)} than the baseline'" if c.verdict else ""
            cells.append(
                f"<td class='{css}' data-metric='{html.escape(column.metric)}'{title}>{c.text(column.digits)}</td>"
            )
        rows.append(f"<tr data-variant='{html.escape(variant)}'><td>{label}</td>{''.join(cells)}</tr>")
    return (
        f"<p class='answer' id='answer'>{html.escape(glance.answer)}</p>"
        f"<table class='glance' id='glance'><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"
        f"<p class='facts'>{html.escape(LEGEND)}; <b>bold</b>: the best, told apart from the rest</p>"
    )


def _header_html(batch: BatchTestResult, baseline: str, links: ReportLinks) -> str:
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(batch.started_at)) if batch.started_at else ""
    facts = [
        f"batch <code>{html.escape(batch.batch_id)}</code>",
        f"{len(batch.by_variant())} variant combinations x {len({r.case_id for r in batch.results})} cases",
        f"{len(batch.failed)} failed" if batch.failed else "no failures",
        f"baseline <b>{html.escape(baseline)}</b>",
    ]
    if batch.duration_s:
        facts.append(f"{batch.duration_s:.0f} s")
    if when:
        facts.append(when)
    anchors = []
    flow = links.flow_run(batch.flow_run_id)
    if flow:
        anchors.append(f"<a href='{html.escape(flow)}'>Prefect flow run</a>")
    parent = links.mlflow_run(links.mlflow_parent_run_id)
    if parent:
        anchors.append(f"<a href='{html.escape(parent)}'>MLflow batch run</a>")
    return f"<p class='facts'>{' · '.join(facts)}</p>" + (
        f"<p class='facts'>{' · '.join(anchors)}</p>" if anchors else ""
    )


def _script_json(data: Any) -> str:
    """JSON safe inside a <script> element."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/").replace("<!--", "<\\!--")


def render_report(
    batch: BatchTestResult,
    links: ReportLinks | None = None,
    baseline: str | None = None,
    analysis: tuple[list[PairedComparison], bytes | None] | None = None,
    *,
    show_paths: bool = False,
) -> str:
    """The report page of ``batch`` as HTML text (self-contained).

    ``analysis`` is what :func:`verdicts_and_plot` returned for this baseline, if the caller has it already;
    ``show_paths`` keeps the file paths outputs hold (hidden by default: they differ in every execution).

    Raises:
        ConfigError: ``baseline`` is not a variant combination of the batch, or the batch is empty.
    """
    links = links or ReportLinks()
    base = resolve_baseline(batch, baseline)
    verdicts, png = analysis if analysis is not None else verdicts_and_plot(batch, base)
    plot = (
        f"<img id='forest' alt='forest plot: difference vs {html.escape(base)} with its interval per metric' "
        f"src='data:image/png;base64,{base64.b64encode(png).decode()}'>"
        if png
        else "<p>No plot: only one variant combination.</p>"
    )
    page = string.Template(_TEMPLATE.read_text(encoding="utf-8"))
    return page.substitute(
        title=html.escape(f"{batch.project}: batch {batch.batch_id}"),
        header=_header_html(batch, base, links),
        glance=glance_html(one_glance(batch, base)),
        comparison=_comparison_html(verdicts) + race_html(batch) + previous_html(batch),
        plot=plot,
        data=_script_json(grid_data(batch, base, links, show_paths)),
    )


def report_path(batch: BatchTestResult, settings: WTBSettings | None = None) -> Path:
    """Where a batch's report is written by default: ``<WTB_HOME>/reports/<project>-batch-<id>.html``."""
    settings = settings or get_settings()
    return settings.state_dir / "reports" / f"{batch.project}-batch-{batch.batch_id}.html"


def write_report(
    batch: BatchTestResult,
    path: Path | str | None = None,
    *,
    baseline: str | None = None,
    links: ReportLinks | None = None,
    settings: WTBSettings | None = None,
    analysis: tuple[list[PairedComparison], bytes | None] | None = None,
    show_paths: bool = False,
) -> Path:
    """Write the report of ``batch`` (to :func:`report_path` by default) and return its path.

    ``links`` None finds them: the Prefect UI of the current API and the
    batch's MLflow runs (see :func:`find_links`); ``show_paths`` keeps the
    file paths in outputs.
    """
    settings = settings or get_settings()
    target = Path(path) if path is not None else report_path(batch, settings)
    if links is None:
        links = find_links(batch, settings)
    text = render_report(batch, links, baseline, analysis, show_paths=show_paths)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return target.resolve()


# ─── where the data and the links come from ───


def load_batch(batch_id: str, settings: WTBSettings | None = None) -> BatchTestResult:
    """A batch rebuilt from the execution index (``$WTB_HOME/executions.sqlite``): every stored result.

    Raises:
        ConfigError: no batch of that id in the index, or none of its executions has a result yet.
    """
    from wtb_prefect.run.execution_index import open_index

    settings = settings or get_settings()
    index = open_index(settings.state_dir)
    record = index.batch(batch_id)
    if record is None:
        known = [b.batch_id for b in index.batches()][-5:]
        raise ConfigError(
            "batch_id",
            f"{batch_id!r} is not in the execution index {index.path}",
            f"give one of the latest batches {known} (WTB_HOME must be the folder the batch ran with)",
        )
    executions = index.list(batch_id=batch_id)
    results = [r for r in (index.result(e.execution_id) for e in executions) if r is not None]
    if not results:
        raise ConfigError("batch_id", f"batch {batch_id!r} has no finished execution yet", "wait for it, or resume it")
    flow_runs = [e.flow_run_id for e in executions if e.flow_run_id]
    started = min(r.started_at for r in results)
    return BatchTestResult(
        batch_id=batch_id,
        project=record.project,
        results=results,
        flow_run_id=max(set(flow_runs), key=flow_runs.count) if flow_runs else None,
        started_at=started,
        duration_s=max(r.started_at + r.duration_s for r in results) - started,
    )


def prefect_ui_url(settings: WTBSettings | None = None) -> str | None:
    """The Prefect UI of the API in use (configured, or the embedded server if it runs); never starts one."""
    settings = settings or get_settings()
    api = settings.prefect_api_url or os.environ.get("PREFECT_API_URL")
    if not api:
        from wtb_prefect.services.prefect_server import PrefectServer

        info = PrefectServer(settings).status()
        api = info.url if info else None
    return api.rstrip("/").removesuffix("/api") if api else None


def find_links(
    batch: BatchTestResult, settings: WTBSettings | None = None, mlflow_ui: str | None = None
) -> ReportLinks:
    """The Prefect UI address and the batch's MLflow runs (from ``batch.tracking`` or the tracking store)."""
    settings = settings or get_settings()
    links = ReportLinks(prefect_ui=prefect_ui_url(settings))
    if not settings.mlflow_enabled:
        return links
    from wtb_prefect.integrations import mlflow as mlflow_tracking

    recorded = batch.tracking.get("mlflow", {})
    uri = recorded.get("tracking_uri") or mlflow_tracking.tracking_uri(settings)
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        return links  # nothing recorded, and reading would create an empty store
    links.mlflow_ui = mlflow_ui or (uri.rstrip("/") if uri.startswith(("http://", "https://")) else MLFLOW_UI_DEFAULT)
    if recorded.get("experiment_id") and recorded.get("parent_run_id"):  # this process recorded it: no query
        links.mlflow_experiment_id = recorded["experiment_id"]
        links.mlflow_parent_run_id = recorded["parent_run_id"]
        links.mlflow_runs = dict(recorded.get("child_run_ids", {}))
        return links
    try:
        _mlflow_runs(mlflow_tracking.mlflow_client(uri), batch, links)
    except Exception:  # a store that does not answer: the report goes without MLflow links
        logger.warning("no MLflow links in the report of batch %s", batch.batch_id, exc_info=True)
    return links


def _mlflow_runs(client: MlflowClient, batch: BatchTestResult, links: ReportLinks) -> None:
    experiment = client.get_experiment_by_name(batch.project)
    if experiment is None:
        return
    links.mlflow_experiment_id = experiment.experiment_id
    runs = client.search_runs([experiment.experiment_id], f"tags.`wtb.batch_id` = '{batch.batch_id}'")
    for run in runs:
        kind = run.data.tags.get("wtb.kind")
        if kind == "batch":
            links.mlflow_parent_run_id = run.info.run_id
        elif kind == "variant":
            links.mlflow_runs[run.data.tags.get("wtb.variant", run.info.run_name)] = run.info.run_id
