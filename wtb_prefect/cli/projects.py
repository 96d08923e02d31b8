"""``wtb projects``: the projects this CLI has run, or one project's nodes and variants."""

from __future__ import annotations

import os
import time

import typer
from rich.table import Table

from wtb_prefect.cli.common import (
    known,
    load_project,
)
from wtb_prefect.cli.root import app, console


@app.command()
def projects(
    reference: str = typer.Argument(None, help="Show this project's nodes, variants and versions."),
) -> None:
    """List the projects this CLI has run (and saved project blocks), or show one project."""
    from wtb_prefect.define.project import WORKFLOW_KEY

    if reference is not None:
        proj = load_project(reference)
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
    for name, entry in sorted(known().items()):
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
