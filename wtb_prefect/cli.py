"""The ``wtb`` command line."""

from __future__ import annotations

import importlib
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="wtb: test LangGraph workflows on Prefect and Ray.", no_args_is_help=True)
server_app = typer.Typer(help="The embedded Prefect server.", no_args_is_help=True)
app.add_typer(server_app, name="server")
console = Console()


@server_app.command("start")
def server_start(
    port: int = typer.Option(None, help="Port (default 4200, or a free one if taken)."),
    database_url: str = typer.Option(None, help="PostgreSQL URL; default SQLite under the state folder."),
) -> None:
    """Start the embedded Prefect server (or show the one that runs)."""
    from .services.prefect_server import PrefectServer

    info = PrefectServer().start(port=port, database_url=database_url)
    console.print(f"Prefect server running: API {info.url}  UI {info.ui_url}  (pid {info.pid}, {info.database})")


@server_app.command("stop")
def server_stop() -> None:
    """Stop the embedded Prefect server."""
    from .services.prefect_server import PrefectServer

    console.print("stopped" if PrefectServer().stop() else "no server was running")


@server_app.command("status")
def server_status() -> None:
    """Say whether the embedded Prefect server runs, and where."""
    from .services.prefect_server import PrefectServer

    info = PrefectServer().status()
    if info is None:
        console.print("not running")
        raise typer.Exit(1)
    console.print(f"running: API {info.url}  UI {info.ui_url}  (pid {info.pid}, {info.database})")


def comparison_table(rows: list[dict[str, Any]], title: str) -> Table:
    """A rich table of summary rows."""
    table = Table(title=title)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    for column in columns:
        table.add_column(column, justify="left" if column == "variant" else "right")
    for row in rows:
        table.add_row(*["" if row.get(c) is None else str(row.get(c)) for c in columns])
    return table


@app.command()
def demo(
    example: str = typer.Option("examples.quickstart.project", help="Module of the example project."),
    parallelism: int = typer.Option(None, help="Executions at once."),
) -> None:
    """Run the example project's variant matrix on its test cases and print the comparison."""
    from rich.progress import Progress

    from .bench import WTBTestBench
    from .services.prefect_server import ensure_prefect_api

    module = importlib.import_module(example)
    project = module.build_project()
    api = ensure_prefect_api()
    console.print(f"Prefect API: {api}")
    bench = WTBTestBench()
    bench.register_project(project)
    total = len(module.VARIANT_MATRIX) * len(module.TEST_CASES)
    with Progress(console=console) as progress:
        bar = progress.add_task(f"{project.name}: {total} executions", total=total)
        batch = bench.run_batch_test(
            project=project.name,
            variant_matrix=module.VARIANT_MATRIX,
            test_cases=module.TEST_CASES,
            parallelism=parallelism,
            on_result=lambda _: progress.advance(bar),
        )
    console.print(comparison_table(batch.summary(), f"{project.name}: batch {batch.batch_id}"))
    ui = api.removesuffix("/api")
    console.print(f"Flow run in the Prefect UI: {ui}/runs/flow-run/{batch.flow_run_id}")
    if batch.failed:
        console.print(f"[red]{len(batch.failed)} execution(s) failed[/red]")
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
