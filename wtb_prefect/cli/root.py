"""The ``wtb`` application, its global options, its console and its exit codes.

Exit codes: 0 ok; 1 an execution failed; 2 bad input (nothing ran); 3 a
regression against the baseline (``wtb batch --tolerance``).
"""

from __future__ import annotations

import atexit
import gc
import os

import typer
from rich.console import Console

__all__ = ["EXIT_BAD_INPUT", "EXIT_FAILED", "EXIT_REGRESSION", "app", "console"]

# Registered first, so it runs last at exit: the objects Prefect, Ray and LangGraph
# leave behind are then not garbage-collected one by one at interpreter teardown,
# which would delay the end of every command.
atexit.register(gc.freeze)

app = typer.Typer(help="wtb: test LangGraph workflows on Prefect and Ray.", no_args_is_help=True)
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
    if console.no_color or not console.is_terminal:
        # Ray prefixes the worker lines it prints here with colour codes whatever the output is;
        # its own switch turns them off for a file, a pipe or NO_COLOR.
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")
