"""``wtb up``, ``wtb down``, ``wtb status``: the Prefect server and Ray head of a state folder."""

from __future__ import annotations

import time

import typer
from rich.table import Table

from wtb_prefect.cli.common import (
    fail,
)
from wtb_prefect.cli.output import (
    print_table,
)
from wtb_prefect.cli.root import EXIT_FAILED, app, console


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
            raise fail(str(exc), EXIT_FAILED) from None
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
    print_table(table)
    console.print(
        f"this state folder: {here}. Stop a folder's services with `WTB_HOME=<folder> wtb down`", highlight=False
    )
