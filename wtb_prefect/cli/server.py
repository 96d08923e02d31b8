"""``wtb server start|stop|status``: the embedded Prefect server alone."""

from __future__ import annotations

import typer

from wtb_prefect.cli.root import app, console

server_app = typer.Typer(help="The embedded Prefect server.", no_args_is_help=True)
app.add_typer(server_app, name="server")


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
