"""``wtb cache info|clear``: the persistent node-call cache."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import typer
from rich.table import Table

from wtb_prefect.cli.common import (
    guarded,
)
from wtb_prefect.cli.root import app, console

cache_app = typer.Typer(
    help="The persistent node-call cache (ExecutionConfig.node_cache='persistent').", no_args_is_help=True
)
app.add_typer(cache_app, name="cache")


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
    from wtb_prefect.run.node_cache import cache_dir, cache_info
    from wtb_prefect.settings import get_settings

    state_dir = get_settings().state_dir
    with _blocks_api(storage):
        rows = guarded(cache_info, state_dir, project, storage)
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
    from wtb_prefect.run.node_cache import clear_cache
    from wtb_prefect.settings import get_settings

    with _blocks_api(storage):
        removed = guarded(clear_cache, get_settings().state_dir, project, storage)
    console.print(f"removed {removed} node-call cache entries" + (f" of project {project}" if project else ""))
