"""``wtb executions|inspect|pause|resume|rollback``: executions of the state folder."""

from __future__ import annotations

import time
from typing import Any

import typer
from rich.table import Table

from wtb_prefect.cli.common import (
    bench_with,
    fail,
    guarded,
    known,
    load_project,
)
from wtb_prefect.cli.output import (
    as_json,
)
from wtb_prefect.cli.root import EXIT_FAILED, app, console


@app.command()
def executions(
    project: str = typer.Option(None, "--project", help="Only this project (name)."),
    batch_id: str = typer.Option(None, "--batch", help="Only this batch."),
    status: str = typer.Option(None, "--status", help="pending, running, paused, completed, failed or interrupted."),
) -> None:
    """List executions from the execution index of the state folder (WTB_HOME)."""
    from wtb_prefect.bench import WTBTestBench

    records = guarded(WTBTestBench().list_executions, project=project, batch_id=batch_id, status=status)
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

    record = guarded(WTBTestBench().get_execution, execution_id)
    reference = project or (known().get(record.project) or {}).get("reference")
    if reference is None:
        raise fail(
            f"execution {execution_id!r} belongs to project {record.project!r}, which this CLI has not run. "
            "Fix: pass --project REF ('package.module:attribute' or a YAML path)"
        )
    return bench_with(load_project(reference)), record


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
    console.print_json(as_json(guarded(bench.get_state, execution_id)))
    table = Table(title="checkpoints (newest first)")
    for column in ("checkpoint_id", "step", "nodes", "next", "created"):
        table.add_column(column)
    for cp in guarded(bench.get_checkpoints, execution_id):
        table.add_row(cp.checkpoint_id, str(cp.step), ", ".join(cp.nodes), ", ".join(cp.next), str(cp.created_at or ""))
    console.print(table)


@app.command()
def pause(execution_id: str = typer.Argument(..., help="A running execution.")) -> None:
    """Ask a running execution to stop at its next node boundary (from any process)."""
    from wtb_prefect.bench import WTBTestBench

    guarded(WTBTestBench().pause, execution_id)
    console.print(f"pause requested for {execution_id}")


@app.command()
def resume(
    execution_id: str = typer.Argument(..., help="A paused, failed or interrupted execution."),
    project: str = typer.Option(None, "--project", help="Project reference, if the CLI has not run it."),
) -> None:
    """Continue an execution from its latest checkpoint."""
    bench, _ = _control_bench(execution_id, project)
    result = guarded(bench.resume, execution_id)
    console.print(f"{execution_id}: {result.status}; nodes run now: {[n.node for n in result.nodes]}")
    console.print_json(as_json(result.final_state))
    if result.status == "failed":
        raise fail(f"execution failed: {result.error}", EXIT_FAILED)


@app.command()
def rollback(
    execution_id: str = typer.Argument(..., help="An execution that is not running."),
    checkpoint_id: str = typer.Argument(..., help="One of its checkpoints (see wtb inspect)."),
    project: str = typer.Option(None, "--project", help="Project reference, if the CLI has not run it."),
) -> None:
    """Move an execution back to a checkpoint; `wtb resume` then runs again from there."""
    bench, _ = _control_bench(execution_id, project)
    guarded(bench.rollback, execution_id, checkpoint_id)
    console.print(f"{execution_id} rolled back to {checkpoint_id}; continue with: wtb resume {execution_id}")
