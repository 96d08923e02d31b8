"""``wtb demo``: the example project's variant matrix, end to end."""

from __future__ import annotations

import importlib

import typer

from wtb_prefect.cli.output import (
    comparison_table,
    print_command,
    print_glance,
    print_location,
    print_table,
    progress_bar,
)
from wtb_prefect.cli.root import app, console


@app.command()
def demo(
    example: str = typer.Option("examples.rag.project", help="Module of the example project."),
    parallelism: int = typer.Option(None, help="Executions computing at once (default: the project's RayConfig)."),
) -> None:
    """Run the example project's variant matrix on its test cases and print the comparison.

    The module gives ``build_project()``, ``VARIANT_MATRIX`` and ``TEST_CASES``,
    and optionally ``SUMMARY_METRICS``: execution metrics to add to the table.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

    from wtb_prefect.bench import WTBTestBench
    from wtb_prefect.integrations.mlflow import experiment_url, mlflow_ui_command
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
    with progress_bar(*columns) as progress:
        bar = progress.add_task(f"{project.name}: executions", total=total)
        batch = bench.run_batch_test(
            project=project.name,
            variant_matrix=module.VARIANT_MATRIX,
            test_cases=module.TEST_CASES,
            parallelism=parallelism,
            on_result=lambda _: progress.advance(bar),
        )
    summary = batch.summary(metrics=getattr(module, "SUMMARY_METRICS", ()))
    print_table(comparison_table(summary, f"{project.name}: batch {batch.batch_id} ({batch.duration_s:.0f} s)"))
    if len(batch.by_variant()) > 1:
        print_glance(batch)
    if batch.forest_plot:
        print_location("Forest plot", str(batch.forest_plot))
    ui = api.removesuffix("/api")
    print_location("Flow run in the Prefect UI", f"{ui}/runs/flow-run/{batch.flow_run_id}")
    if batch.tracking.get("report"):
        print_location("Report (every case side by side across the variants)", str(batch.tracking["report"]))
    settings = get_settings()
    if settings.mlflow_enabled:
        console.print(
            f"MLflow comparison (experiment {project.name!r}: a parent run per batch, a child run per "
            "variant combination; select the children and press Compare):",
            highlight=False,
            markup=False,
        )
        experiment = batch.tracking.get("mlflow", {}).get("experiment_id", "0")
        print_command(f".venv/bin/{mlflow_ui_command(settings)}")
        console.print(
            f"  then open {experiment_url('http://127.0.0.1:5000', experiment)}",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
    if batch.failed:
        console.print(f"[red]{len(batch.failed)} execution(s) failed[/red]")
        raise typer.Exit(1)
