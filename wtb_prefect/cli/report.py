"""``wtb report``: a batch's HTML report."""

from __future__ import annotations

from pathlib import Path

import typer

from wtb_prefect.cli.common import (
    guarded,
)
from wtb_prefect.cli.root import app, console


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
    result = guarded(load_batch, batch_id, settings)
    path = guarded(
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
