"""The ``wtb`` command line.

Exit codes: 0 ok; 1 an execution failed; 2 bad input (nothing ran); 3 a
regression against the baseline (``wtb batch --tolerance``).
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import importlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

# Registered first, so it runs last at exit: the objects Prefect, Ray and LangGraph
# leave behind are then not garbage-collected one by one at interpreter teardown,
# which took 1 s after a `wtb run` on an idle machine and several under load.
atexit.register(gc.freeze)

app = typer.Typer(help="wtb: test LangGraph workflows on Prefect and Ray.", no_args_is_help=True)
server_app = typer.Typer(help="The embedded Prefect server.", no_args_is_help=True)
app.add_typer(server_app, name="server")
cache_app = typer.Typer(
    help="The persistent node-call cache (ExecutionConfig.node_cache='persistent').", no_args_is_help=True
)
app.add_typer(cache_app, name="cache")
console = Console()

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_REGRESSION = 3


@app.callback()
def _main(
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Show the services' own notices and warnings too (Ray, Prefect, MLflow)."
    ),
) -> None:
    """wtb: test LangGraph workflows on Prefect and Ray."""
    if verbose:
        os.environ["WTB_VERBOSE"] = "1"  # read by this process and inherited by its workers


# ─── Services: up, down, status ───


@app.command()
def up(
    port: int = typer.Option(None, help="Port of the Prefect server (default 4200, or a free one if taken)."),
) -> None:
    """Start the embedded Prefect server and a local Ray head, in parallel, and keep them running.

    Later `wtb run|batch|demo` and the Python API join them instead of
    starting services of their own; `wtb down` stops both.
    """
    from concurrent.futures import ThreadPoolExecutor

    from wtb_prefect.errors import ServiceError
    from wtb_prefect.services.prefect_server import PrefectServer
    from wtb_prefect.services.ray_cluster import RayHead
    from wtb_prefect.settings import get_settings

    settings = get_settings()
    started = time.monotonic()
    with ThreadPoolExecutor(2) as pool:
        server = pool.submit(PrefectServer(settings).start, port=port)
        head = pool.submit(RayHead(settings).start)
        try:
            info, ray_info = server.result(), head.result()
        except ServiceError as exc:
            raise _fail(str(exc), EXIT_FAILED) from None
    console.print(f"Prefect server: API {info.url}  UI {info.ui_url}  (pid {info.pid})", highlight=False)
    console.print(f"Ray head: {ray_info.address}  (pid {ray_info.pid}, temp {ray_info.temp_dir})", highlight=False)
    console.print(
        f"state folder {settings.state_dir}; up in {time.monotonic() - started:.1f} s; stop with `wtb down`",
        highlight=False,
    )


@app.command()
def down() -> None:
    """Stop the Prefect server and the Ray head of the state folder (WTB_HOME)."""
    from concurrent.futures import ThreadPoolExecutor

    from wtb_prefect.services.prefect_server import PrefectServer
    from wtb_prefect.services.ray_cluster import RayHead
    from wtb_prefect.settings import get_settings

    settings = get_settings()
    with ThreadPoolExecutor(2) as pool:
        server = pool.submit(PrefectServer(settings).stop)
        head = pool.submit(RayHead(settings).stop)
        stopped = {"Prefect server": server.result(), "Ray head": head.result()}
    for name, was in stopped.items():
        console.print(f"{name}: {'stopped' if was else 'was not running'}")


@app.command()
def status() -> None:
    """List every embedded Prefect server and Ray cluster this user runs, with their state folders."""
    from wtb_prefect.services.inventory import running_services
    from wtb_prefect.settings import get_settings

    here = str(get_settings().state_dir)
    services = running_services()
    table = Table(title=f"services of this user ({len(services)})")
    for column in ("kind", "pid", "address", "CPU %", "up", "state folder"):
        table.add_column(column)
    now = time.time()
    for item in services:
        folder = item.state_folder or "-"
        table.add_row(
            item.kind,
            str(item.pid),
            item.address,
            f"{item.cpu_percent:.1f}",
            f"{(now - item.started_at) / 60:.0f} min",
            f"[bold]{folder}[/bold]" if folder == here else folder,
        )
    _print_table(table)
    console.print(
        f"this state folder: {here}. Stop a folder's services with `WTB_HOME=<folder> wtb down`", highlight=False
    )


@server_app.command("start")
def server_start(
    port: int = typer.Option(None, help="Port (default 4200, or a free one if taken)."),
    database_url: str = typer.Option(None, help="PostgreSQL URL; default SQLite under the state folder."),
) -> None:
    """Start the embedded Prefect server (or show the one that runs)."""
    from wtb_prefect.services.prefect_server import PrefectServer

    info = PrefectServer().start(port=port, database_url=database_url)
    console.print(f"Prefect server running: API {info.url}  UI {info.ui_url}  (pid {info.pid}, {info.database})")


@server_app.command("stop")
def server_stop() -> None:
    """Stop the embedded Prefect server."""
    from wtb_prefect.services.prefect_server import PrefectServer

    console.print("stopped" if PrefectServer().stop() else "no server was running")


@server_app.command("status")
def server_status() -> None:
    """Say whether the embedded Prefect server runs, and where."""
    from wtb_prefect.services.prefect_server import PrefectServer

    info = PrefectServer().status()
    if info is None:
        console.print("not running")
        raise typer.Exit(1)
    console.print(f"running: API {info.url}  UI {info.ui_url}  (pid {info.pid}, {info.database})")


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


def _print_table(table: Table) -> None:
    """Print ``table`` whole: never squeezed or cropped to a narrow terminal or a pipe's 80 columns."""
    from rich.measure import Measurement

    needed = Measurement.get(console, console.options.update(width=1000), table).maximum
    if needed <= console.width:
        console.print(table)
    else:
        Console(file=console.file, width=needed, force_terminal=console.is_terminal).print(table)


@app.command()
def demo(
    example: str = typer.Option("examples.rag.project", help="Module of the example project."),
    parallelism: int = typer.Option(None, help="Executions computing at once (default: the project's RayConfig)."),
) -> None:
    """Run the example project's variant matrix on its test cases and print the comparison.

    The module gives ``build_project()``, ``VARIANT_MATRIX`` and ``TEST_CASES``,
    and optionally ``SUMMARY_METRICS``: execution metrics to add to the table.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from wtb_prefect.bench import WTBTestBench
    from wtb_prefect.integrations.mlflow import mlflow_ui_command
    from wtb_prefect.services.prefect_server import ensure_prefect_api
    from wtb_prefect.settings import get_settings

    module = importlib.import_module(example)
    project = module.build_project()
    api = ensure_prefect_api()
    console.print(f"Prefect API: {api}")
    bench = WTBTestBench()
    bench.register_project(project)
    total = len(module.VARIANT_MATRIX) * len(module.TEST_CASES)
    console.print(
        f"{project.name}: {len(module.VARIANT_MATRIX)} variant combinations x {len(module.TEST_CASES)} "
        "test cases (node environments are built or reused first)"
    )
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        bar = progress.add_task(f"{project.name}: executions", total=total)
        batch = bench.run_batch_test(
            project=project.name,
            variant_matrix=module.VARIANT_MATRIX,
            test_cases=module.TEST_CASES,
            parallelism=parallelism,
            on_result=lambda _: progress.advance(bar),
        )
    summary = batch.summary(metrics=getattr(module, "SUMMARY_METRICS", ()))
    _print_table(comparison_table(summary, f"{project.name}: batch {batch.batch_id} ({batch.duration_s:.0f} s)"))
    _print_verdicts(batch)
    ui = api.removesuffix("/api")
    console.print(f"Flow run in the Prefect UI: {ui}/runs/flow-run/{batch.flow_run_id}")
    if batch.tracking.get("report"):
        console.print(
            f"Report (every case side by side across the variants): {batch.tracking['report']}",
            highlight=False,
            soft_wrap=True,
        )
    settings = get_settings()
    if settings.mlflow_enabled:
        console.print(
            f"MLflow comparison (experiment {project.name!r}: a parent run per batch, a child run per "
            "variant combination; select the children and press Compare):\n"
            f"  .venv/bin/{mlflow_ui_command(settings)}\n  then open http://127.0.0.1:5000",
            highlight=False,
            soft_wrap=True,
        )
    if batch.failed:
        console.print(f"[red]{len(batch.failed)} execution(s) failed[/red]")
        raise typer.Exit(1)


def _print_verdicts(batch: Any) -> None:
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
    _print_table(table)
    for judged in batch.pairwise:
        console.print(
            f"{judged.judge}: {judged.variant} vs {judged.baseline} win/tie/loss "
            f"{judged.win_rate:.2f}/{judged.tie_rate:.2f}/{judged.loss_rate:.2f} (p={judged.p_value:.3g})",
            highlight=False,
        )
    if batch.forest_plot:
        console.print(f"Forest plot: {batch.forest_plot}", highlight=False, soft_wrap=True)


# ─── Projects by reference, remembered per state folder ───


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _load(reference: str) -> Any:
    """The project ``reference`` names (or a project name resolved before from this state folder)."""
    from wtb_prefect.define.registry import resolve_project
    from wtb_prefect.errors import WTBError

    try:
        return resolve_project(reference)
    except WTBError as exc:
        raise _fail(str(exc)) from None


def _join_ray_early() -> None:
    """Join the Ray head of `wtb up` (if one runs) before the project loads; its first worker starts meanwhile.

    The command leaves Ray when it ends (:func:`leave_ray`), without the half
    second Ray's own exit hook waits.
    """
    import ray  # noqa: F401  (registers Ray's exit hook; exit hooks run last registered first)

    from wtb_prefect.services.ray_cluster import join_running_head_early, leave_ray

    atexit.register(leave_ray)
    join_running_head_early()


def _known() -> dict[str, dict[str, Any]]:
    from wtb_prefect.define.registry import known_projects

    return known_projects()


def _bench(*projects: Any) -> Any:
    from wtb_prefect.bench import WTBTestBench

    bench = WTBTestBench()
    for project in projects:
        bench.register_project(project)
    return bench


def _guarded(call: Any, *args: Any, **kwargs: Any) -> Any:
    """Run ``call``; a WTBError (bad input, found before any work) exits with code 2.

    A regression (``RegressionError``, which carries its batch) is passed on, and so are
    the errors of a batch that stopped resumable (Prefect API gone, state disk full).
    """
    from wtb_prefect.analysis.comparison import RegressionError
    from wtb_prefect.errors import PrefectAPIUnavailableError, StateStorageError, WTBError

    try:
        return call(*args, **kwargs)
    except (RegressionError, PrefectAPIUnavailableError, StateStorageError):
        raise
    except WTBError as exc:
        raise _fail(str(exc)) from None


def _data(value: str, what: str) -> Any:
    from wtb_prefect.define.registry import load_data

    return _guarded(load_data, value, what)


def _variants(pairs: list[str] | None, workflow: str | None) -> dict[str, str]:
    from wtb_prefect.define.project import WORKFLOW_KEY

    choice: dict[str, str] = {}
    for pair in pairs or []:
        node, sep, name = pair.partition("=")
        if not sep or not node or not name:
            raise _fail(f"--variant {pair!r}: write NODE=VARIANT (or _workflow=NAME)")
        choice[node.strip()] = name.strip()
    if workflow:
        choice[WORKFLOW_KEY] = workflow
    return choice


def _json(value: Any) -> str:
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json")
    return json.dumps(value, indent=2, default=str, ensure_ascii=False)


def _ui_link(flow_run_id: str | None) -> None:
    api = os.environ.get("PREFECT_API_URL") or ""
    if flow_run_id and api:
        console.print(f"Flow run: {api.removesuffix('/api')}/runs/flow-run/{flow_run_id}")


# ─── Running ───


@app.command()
def run(
    project: str = typer.Argument(..., help="'package.module:attribute', a project YAML path, or a known name."),
    case: str = typer.Option(..., "--case", "-c", help="Initial state: inline JSON or a JSON/YAML file."),
    variant: list[str] = typer.Option(None, "--variant", "-v", help="NODE=VARIANT (repeatable)."),
    workflow: str = typer.Option(None, "--workflow", "-w", help="Workflow variant."),
) -> None:
    """Run one execution and print its nodes and final state."""
    _join_ray_early()
    proj = _load(project)
    initial = _data(case, "--case")
    if not isinstance(initial, dict):
        raise _fail(f"--case must be one initial state (a JSON object), got {type(initial).__name__}")
    choice = _variants(variant, workflow)
    result = _guarded(_bench(proj).run, project=proj.name, initial_state=initial, variant_config=choice)
    from rich.markup import escape

    table = Table(title=escape(f"{proj.name} [{result.variant_label}]"))
    for column in ("node", "implementation", "status", "seconds"):
        table.add_column(column)
    for record in result.nodes:
        table.add_row(record.node, record.implementation, record.status, f"{record.duration_s:.3f}")
    console.print(table)
    console.print_json(_json(result.final_state))
    console.print(f"execution {result.execution_id}: {result.status}", markup=False, highlight=False)
    for name, value in result.scores.items():
        console.print(f"score {name}: {value:g}", markup=False, highlight=False)
    for name, error in result.evaluator_errors.items():
        console.print(f"evaluator {name} gave no score: {error}", markup=False, highlight=False)
    _ui_link(result.flow_run_id)
    if result.status == "failed":
        raise _fail(f"execution failed: {result.error}", EXIT_FAILED)
    if result.status == "paused":
        console.print(f"paused; continue with: wtb resume {result.execution_id}")


@app.command()
def batch(
    project: str = typer.Argument(..., help="'package.module:attribute', a project YAML path, or a known name."),
    cases: str = typer.Option(None, "--cases", help="Test cases: a JSON/YAML file, inline JSON or module:attr."),
    matrix: str = typer.Option(None, "--matrix", help="Variant matrix: a JSON/YAML file, inline JSON or module:attr."),
    resume: str = typer.Option(
        None, "--resume", help="Finish batch BATCH_ID (killed, out of disk, or its Prefect API was down) instead."
    ),
    parallelism: int = typer.Option(None, "--parallelism", "-p", min=1, help="Executions computing at once."),
    baseline: str = typer.Option(None, "--baseline", help="Variant label to compare against (default: the first)."),
    tolerance: list[str] = typer.Option(
        None, "--tolerance", help="METRIC=AMOUNT (e.g. answer_hit=0.05, latency_s=20%); a regression exits 3."
    ),
    require_significance: bool = typer.Option(
        False,
        "--require-significance",
        help="A regression also needs the paired verdict, corrected over the batch's tests, to be 'worse'.",
    ),
    output: Path = typer.Option(None, "--output", "-o", help="Write every execution's row as JSON here."),
    repetitions: int = typer.Option(None, "--repetitions", "-r", help="Independent samples per (variant, case)."),
    node_cache: str = typer.Option(
        None,
        "--node-cache",
        help="off | batch (share identical node calls; default) | persistent (also across batches).",
    ),
) -> None:
    """Run every variant combination on every test case with a live progress bar.

    With ``--resume BATCH_ID`` (and no cases nor matrix), finish that batch instead: what finished is
    not run again, and what the Prefect API missed while it was unreachable is recorded.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from wtb_prefect.analysis.comparison import RegressionError
    from wtb_prefect.errors import PrefectAPIUnavailableError, StateStorageError

    if (cases is None) == (resume is None) or (resume is not None and matrix is not None):
        raise _fail("give --cases (and optionally --matrix), or --resume BATCH_ID alone")
    _join_ray_early()
    proj = _load(project)
    if node_cache is not None:
        if node_cache not in ("off", "batch", "persistent"):
            raise _fail(f"--node-cache: is {node_cache!r}. Fix: give off, batch or persistent")
        proj.execution.node_cache = node_cache
    gate = {"baseline": baseline, "tolerances": list(tolerance)} if tolerance else None
    if gate is not None and require_significance:
        gate["require_significance"] = True
    bench = _bench(proj)
    if resume is not None:
        variant_matrix, test_cases = None, None
        total = len(bench.list_executions(batch_id=resume))
    else:
        variant_matrix = _data(matrix, "--matrix") if matrix else [{}]
        test_cases = _data(cases, "--cases")
        total = len(variant_matrix or [{}]) * (len(test_cases) if isinstance(test_cases, list) else 0)
        total *= repetitions or proj.execution.repetitions
    failed = 0
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("[red]{task.fields[failed]} failed"),
        TimeElapsedColumn(),
    )
    regression = None
    with Progress(*columns, console=console) as progress:
        bar = progress.add_task(f"{proj.name}", total=total, failed=0)

        def advance(result: Any) -> None:
            nonlocal failed
            failed += result.status == "failed"
            progress.update(bar, advance=1, failed=failed)

        try:
            result = _guarded(
                bench.run_batch_test,
                project=proj.name,
                variant_matrix=variant_matrix,
                test_cases=test_cases,
                parallelism=parallelism,
                on_result=advance,
                regression_gate=gate,
                resume=resume,
                repetitions=repetitions,
            )
        except RegressionError as exc:
            regression, result = exc, exc.batch
        except (PrefectAPIUnavailableError, StateStorageError) as exc:  # the work is kept: say how to finish it
            raise _fail(str(exc), EXIT_FAILED) from None
    _print_table(comparison_table(_summary(result, baseline), f"{proj.name}: batch {result.batch_id}"))
    _print_node_calls(result)
    _ui_link(result.flow_run_id)
    if output is not None:
        output.write_text(_json([r.row() for r in result.results]))
    if result.failed:
        for r in result.failed[:5]:
            console.print(f"[red]{r.execution_id}[/red] {r.status}: {r.error}", highlight=False)
        raise _fail(f"{len(result.failed)} of {len(result)} executions did not complete", EXIT_FAILED)
    if regression is not None:
        for item in regression.regressions:
            console.print(f"[red]regression[/red] {item}", highlight=False)
        raise _fail(f"{len(regression.regressions)} regression(s) against the baseline", EXIT_REGRESSION)
    if gate is not None:
        console.print("[green]no regression[/green]")


@app.command()
def report(
    batch_id: str = typer.Argument(..., help="A batch id (printed by wtb batch; see wtb executions)."),
    html: Path = typer.Option(None, "--html", help="Write the page here (default: WTB_HOME/reports/...)."),
    baseline: str = typer.Option(None, "--baseline", help="Variant label to compare against (default: the first)."),
    mlflow_ui: str = typer.Option(
        None, "--mlflow-ui", help="MLflow UI address for the links (default: where `mlflow ui` serves)."
    ),
    open_: bool = typer.Option(False, "--open", help="Open the page in the default browser."),
) -> None:
    """Write a batch's HTML report: verdicts, forest plot, and every case side by side across variants."""
    from wtb_prefect.integrations.report import find_links, load_batch, write_report
    from wtb_prefect.settings import get_settings

    settings = get_settings()
    result = _guarded(load_batch, batch_id, settings)
    path = _guarded(
        write_report,
        result,
        html,
        baseline=baseline,
        links=find_links(result, settings, mlflow_ui=mlflow_ui),
        settings=settings,
    )
    console.print(f"Report: {path}", highlight=False, soft_wrap=True)
    if open_:
        import webbrowser

        webbrowser.open(path.as_uri())


def _print_node_calls(result: Any) -> None:
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


@contextlib.contextmanager
def _blocks_api(storage: str | None) -> Iterator[None]:
    """Point Prefect at the API its blocks live on (the embedded server unless configured) when needed."""
    if storage is None:
        yield
        return
    from wtb_prefect.services.prefect_server import ensure_prefect_api, use_prefect_api

    with use_prefect_api(ensure_prefect_api()):
        yield


_STORAGE_HELP = "The Prefect storage block of the cache ('<block-type>/<name>', as node_cache_storage names it)."


@cache_app.command("info")
def cache_info_command(
    project: str = typer.Option(None, "--project", help="Only this project."),
    storage: str = typer.Option(None, "--storage", help=_STORAGE_HELP + " Default: the state folder."),
) -> None:
    """Entries and size of the node-call cache under the state folder (or in a storage block)."""
    from wtb_prefect.run.sharing import cache_dir, cache_info
    from wtb_prefect.settings import get_settings

    state_dir = get_settings().state_dir
    with _blocks_api(storage):
        rows = _guarded(cache_info, state_dir, project, storage)
    if not rows:
        where = f"storage block {storage}" if storage else cache_dir(state_dir)
        console.print(f"no node-call cache entries in {where}", highlight=False)
        return
    table = Table("project", "entries", "nodes", "size", "path")
    for row in rows:
        table.add_row(
            row["project"], str(row["entries"]), str(row["nodes"]), f"{row['bytes'] / 1e6:.2f} MB", row["path"]
        )
    console.print(table)


@cache_app.command("clear")
def cache_clear_command(
    project: str = typer.Option(None, "--project", help="Only this project."),
    storage: str = typer.Option(None, "--storage", help=_STORAGE_HELP + " Default: the state folder."),
) -> None:
    """Delete the node-call cache under the state folder or in a storage block (of one project)."""
    from wtb_prefect.run.sharing import clear_cache
    from wtb_prefect.settings import get_settings

    with _blocks_api(storage):
        removed = _guarded(clear_cache, get_settings().state_dir, project, storage)
    console.print(f"removed {removed} node-call cache entries" + (f" of project {project}" if project else ""))


def _summary(result: Any, baseline: str | None) -> list[dict[str, Any]]:
    from wtb_prefect.analysis.comparison import comparison_table as rows

    return rows(result, baseline)


# ─── Projects ───


@app.command()
def projects(
    reference: str = typer.Argument(None, help="Show this project's nodes, variants and versions."),
) -> None:
    """List the projects this CLI has run (and saved project blocks), or show one project."""
    from wtb_prefect.define.project import WORKFLOW_KEY

    if reference is not None:
        proj = _load(reference)
        table = Table(title=f"{proj.name} v{proj.version}: {proj.description}")
        table.add_column("node")
        table.add_column("variants")
        for node in sorted(proj.all_nodes()):
            table.add_row(node, ", ".join(["default", *proj.list_variants(node)[node]]))
        table.add_row(WORKFLOW_KEY, ", ".join(["default", *proj.list_workflow_variants()]))
        console.print(table)
        console.print(f"evaluators: {', '.join(proj.evaluators) or '-'}")
        return
    table = Table(title="projects")
    for column in ("name", "reference", "last used"):
        table.add_column(column)
    for name, entry in sorted(_known().items()):
        table.add_row(name, entry["reference"], time.strftime("%Y-%m-%d %H:%M", time.localtime(entry["used_at"])))
    for name, block_ref in _saved_project_blocks():
        table.add_row(f"wtb-project/{name}", block_ref, "(Prefect block)")
    console.print(table)


def _saved_project_blocks() -> list[tuple[str, str]]:
    """Saved ``wtb-project`` blocks, when a Prefect API answers (never starts a server)."""
    from wtb_prefect.services.prefect_server import PrefectServer

    api = os.environ.get("PREFECT_API_URL")
    if not api:
        info = PrefectServer().status()
        api = info.url if info else None
    if not api:
        return []
    try:
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
            documents = client.read_block_documents_by_type("wtb-project")
        return [(d.name, str(d.data.get("reference", ""))) for d in documents if d.name]
    except Exception:  # no API, or the block type is not registered
        return []


# ─── Executions: list, inspect, pause, resume, rollback ───


@app.command()
def executions(
    project: str = typer.Option(None, "--project", help="Only this project (name)."),
    batch_id: str = typer.Option(None, "--batch", help="Only this batch."),
    status: str = typer.Option(None, "--status", help="pending, running, paused, completed, failed or interrupted."),
) -> None:
    """List executions from the execution index of the state folder (WTB_HOME)."""
    from wtb_prefect.bench import WTBTestBench

    records = _guarded(WTBTestBench().list_executions, project=project, batch_id=batch_id, status=status)
    table = Table(title=f"executions ({len(records)})")
    for column in ("execution_id", "project", "batch", "variant", "case", "status", "updated"):
        table.add_column(column)
    for r in records:
        table.add_row(
            r.execution_id,
            r.project,
            r.batch_id or "-",
            r.variant_label,
            r.case_id,
            r.status,
            time.strftime("%H:%M:%S", time.localtime(r.updated_at)),
        )
    console.print(table)


def _control_bench(execution_id: str, project: str | None) -> Any:
    """A bench that knows the execution's project (from --project or the CLI's memory)."""
    from wtb_prefect.bench import WTBTestBench

    record = _guarded(WTBTestBench().get_execution, execution_id)
    reference = project or (_known().get(record.project) or {}).get("reference")
    if reference is None:
        raise _fail(
            f"execution {execution_id!r} belongs to project {record.project!r}, which this CLI has not run. "
            "Fix: pass --project REF ('package.module:attribute' or a YAML path)"
        )
    return _bench(_load(reference)), record


@app.command()
def inspect(
    execution_id: str = typer.Argument(..., help="An execution id (see wtb executions)."),
    project: str = typer.Option(None, "--project", help="Project reference, if the CLI has not run it."),
) -> None:
    """Show an execution's record, its current state and its checkpoints."""
    bench, record = _control_bench(execution_id, project)
    console.print(
        f"[bold]{record.execution_id}[/bold]  project {record.project}  variant {record.variant_label}  "
        f"case {record.case_id}  status {record.status}",
        highlight=False,
    )
    if record.error:
        console.print(f"[red]error:[/red] {record.error}", highlight=False)
    console.print_json(_json(_guarded(bench.get_state, execution_id)))
    table = Table(title="checkpoints (newest first)")
    for column in ("checkpoint_id", "step", "nodes", "next", "created"):
        table.add_column(column)
    for cp in _guarded(bench.get_checkpoints, execution_id):
        table.add_row(cp.checkpoint_id, str(cp.step), ", ".join(cp.nodes), ", ".join(cp.next), str(cp.created_at or ""))
    console.print(table)


@app.command()
def pause(execution_id: str = typer.Argument(..., help="A running execution.")) -> None:
    """Ask a running execution to stop at its next node boundary (from any process)."""
    from wtb_prefect.bench import WTBTestBench

    _guarded(WTBTestBench().pause, execution_id)
    console.print(f"pause requested for {execution_id}")


@app.command()
def resume(
    execution_id: str = typer.Argument(..., help="A paused, failed or interrupted execution."),
    project: str = typer.Option(None, "--project", help="Project reference, if the CLI has not run it."),
) -> None:
    """Continue an execution from its latest checkpoint."""
    bench, _ = _control_bench(execution_id, project)
    result = _guarded(bench.resume, execution_id)
    console.print(f"{execution_id}: {result.status}; nodes run now: {[n.node for n in result.nodes]}")
    console.print_json(_json(result.final_state))
    if result.status == "failed":
        raise _fail(f"execution failed: {result.error}", EXIT_FAILED)


@app.command()
def rollback(
    execution_id: str = typer.Argument(..., help="An execution that is not running."),
    checkpoint_id: str = typer.Argument(..., help="One of its checkpoints (see wtb inspect)."),
    project: str = typer.Option(None, "--project", help="Project reference, if the CLI has not run it."),
) -> None:
    """Move an execution back to a checkpoint; `wtb resume` then runs again from there."""
    bench, _ = _control_bench(execution_id, project)
    _guarded(bench.rollback, execution_id, checkpoint_id)
    console.print(f"{execution_id} rolled back to {checkpoint_id}; continue with: wtb resume {execution_id}")


if __name__ == "__main__":
    app()
