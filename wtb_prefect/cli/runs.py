"""``wtb run`` (one execution) and ``wtb batch`` (a variant matrix over test cases)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from wtb_prefect.cli.common import (
    bench_with,
    fail,
    guarded,
    join_ray_early,
    load_data_option,
    load_project,
    variant_choice,
)
from wtb_prefect.cli.output import (
    as_json,
    comparison_table,
    print_glance,
    print_node_calls,
    print_table,
    print_ui_link,
    progress_bar,
)
from wtb_prefect.cli.root import EXIT_FAILED, EXIT_REGRESSION, app, console


@app.command()
def run(
    project: str = typer.Argument(..., help="'package.module:attribute', a project YAML path, or a known name."),
    case: str = typer.Option(..., "--case", "-c", help="Initial state: inline JSON or a JSON/YAML file."),
    variant: list[str] = typer.Option(None, "--variant", "-v", help="NODE=VARIANT (repeatable)."),
    workflow: str = typer.Option(None, "--workflow", "-w", help="Workflow variant."),
) -> None:
    """Run one execution and print its nodes and final state."""
    join_ray_early()
    proj = load_project(project)
    initial = load_data_option(case, "--case")
    if not isinstance(initial, dict):
        raise fail(f"--case must be one initial state (a JSON object), got {type(initial).__name__}")
    choice = variant_choice(variant, workflow)
    result = guarded(bench_with(proj).run, project=proj.name, initial_state=initial, variant_config=choice)
    from rich.markup import escape

    table = Table(title=escape(f"{proj.name} [{result.variant_label}]"))
    for column in ("node", "implementation", "status", "seconds"):
        table.add_column(column)
    for record in result.nodes:
        table.add_row(record.node, record.implementation, record.status, f"{record.duration_s:.3f}")
    console.print(table)
    console.print_json(as_json(result.final_state))
    console.print(f"execution {result.execution_id}: {result.status}", markup=False, highlight=False)
    for name, value in result.scores.items():
        console.print(f"score {name}: {value:g}", markup=False, highlight=False)
    for name, error in result.evaluator_errors.items():
        console.print(f"evaluator {name} gave no score: {error}", markup=False, highlight=False)
    print_ui_link(result.flow_run_id)
    if result.status == "failed":
        raise fail(f"execution failed: {result.error}", EXIT_FAILED)
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
    race: str = typer.Option(
        None,
        "--race",
        help="Race the variants: 'best' or 'baseline' and/or KEY=VALUE,... of RaceConfig (metric=, alpha=, "
        "epsilon=, max_cases=, seed=); decided variants stop early.",
    ),
    race_metric: str = typer.Option(None, "--race-metric", help="The race's primary metric (races the batch)."),
    race_alpha: float = typer.Option(None, "--race-alpha", help="The race's error rate (races the batch)."),
    race_epsilon: float = typer.Option(None, "--race-epsilon", help="The race's indifference zone (races the batch)."),
    budget: str = typer.Option(
        None, "--budget", help="US dollars this run may spend on model calls; past it no node call starts."
    ),
    estimate: bool = typer.Option(
        False, "--estimate", help="Print what the batch would cost, from the project's history; run nothing."
    ),
) -> None:
    """Run every variant combination on every test case with a live progress bar.

    With ``--resume BATCH_ID`` (and no cases nor matrix), finish that batch instead: what finished is
    not run again, and what the Prefect API missed while it was unreachable is recorded.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

    from wtb_prefect.analysis.comparison import RegressionError
    from wtb_prefect.cli.race import print_race, race_from_options
    from wtb_prefect.errors import PrefectAPIUnavailableError, StateStorageError

    if (cases is None) == (resume is None) or (resume is not None and matrix is not None):
        raise fail("give --cases (and optionally --matrix), or --resume BATCH_ID alone")
    try:
        race_fields = race_from_options(race, race_metric, race_alpha, race_epsilon)
    except ValueError as exc:
        raise fail(
            f"--race: {exc}. Fix: give best|baseline and/or KEY=VALUE,... (e.g. metric=answer_hit,alpha=0.05)"
        ) from None
    from wtb_prefect.cli.cost import print_cost, print_estimate
    from wtb_prefect.errors import ConfigError
    from wtb_prefect.pricing import check_dollars

    try:
        budget_usd = check_dollars(budget, "--budget")
    except ConfigError as exc:
        raise fail(str(exc)) from None
    if estimate:  # prices the plan from the index: no service starts, no node runs
        if resume is not None:
            raise fail("--estimate: give --cases (and optionally --matrix), not --resume")
        proj = load_project(project)
        planned = guarded(
            bench_with(proj).estimate_batch,
            proj.name,
            load_data_option(matrix, "--matrix") if matrix else [{}],
            load_data_option(cases, "--cases"),
            repetitions,
        )
        print_estimate(planned)
        return
    join_ray_early()
    proj = load_project(project)
    if node_cache is not None:
        if node_cache not in ("off", "batch", "persistent"):
            raise fail(f"--node-cache: is {node_cache!r}. Fix: give off, batch or persistent")
        proj.execution.node_cache = node_cache
    gate = {"baseline": baseline, "tolerances": list(tolerance)} if tolerance else None
    if gate is not None and require_significance:
        gate["require_significance"] = True
    bench = bench_with(proj)
    if resume is not None:
        variant_matrix, test_cases = None, None
        total = len(bench.list_executions(batch_id=resume))
    else:
        variant_matrix = load_data_option(matrix, "--matrix") if matrix else [{}]
        test_cases = load_data_option(cases, "--cases")
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
    with progress_bar(*columns) as progress:
        bar = progress.add_task(f"{proj.name}", total=total, failed=0)

        def advance(result: Any) -> None:
            nonlocal failed
            failed += result.status == "failed"
            progress.update(bar, advance=1, failed=failed)

        try:
            result = guarded(
                bench.run_batch_test,
                project=proj.name,
                variant_matrix=variant_matrix,
                test_cases=test_cases,
                parallelism=parallelism,
                on_result=advance,
                regression_gate=gate,
                resume=resume,
                repetitions=repetitions,
                race=race_fields,
                budget_usd=budget_usd,
            )
        except RegressionError as exc:
            regression, result = exc, exc.batch
        except (PrefectAPIUnavailableError, StateStorageError) as exc:  # the work is kept: say how to finish it
            raise fail(str(exc), EXIT_FAILED) from None
    print_table(comparison_table(result.summary(), f"{proj.name}: batch {result.batch_id}"))
    if len(result.by_variant()) > 1:
        print_glance(result, baseline)
    print_node_calls(result)
    print_cost(result)
    print_race(result)
    print_ui_link(result.flow_run_id)
    if output is not None:
        output.write_text(as_json([r.row() for r in result.results]))
    if result.failed:
        for r in result.failed[:5]:
            console.print(f"[red]{r.execution_id}[/red] {r.status}: {r.error}", highlight=False)
        raise fail(f"{len(result.failed)} of {len(result)} executions did not complete", EXIT_FAILED)
    if regression is not None:
        for item in regression.regressions:
            console.print(f"[red]regression[/red] {item}", highlight=False)
        raise fail(f"{len(regression.regressions)} regression(s) against the baseline", EXIT_REGRESSION)
    if gate is not None:
        console.print("[green]no regression[/green]")
