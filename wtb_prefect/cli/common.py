"""What the commands share: loading a project by reference, bad input as exit code 2, joining Ray early."""

from __future__ import annotations

import atexit
from typing import Any

import typer

from wtb_prefect.cli.root import EXIT_BAD_INPUT, console


def fail(message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    """Print ``message`` as an error and return the exit (code 2, bad input, unless ``code`` says otherwise) to raise."""
    console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def load_project(reference: str) -> Any:
    """The project ``reference`` names (or a project name resolved before from this state folder)."""
    from wtb_prefect.define.registry import resolve_project
    from wtb_prefect.errors import WTBError

    try:
        return resolve_project(reference)
    except WTBError as exc:
        raise fail(str(exc)) from None


def join_ray_early() -> None:
    """Join the Ray head of `wtb up` (if one runs) before the project loads; its first worker starts meanwhile.

    The command leaves Ray when it ends (:func:`leave_ray`), without the half
    second Ray's own exit hook waits.
    """
    import ray  # noqa: F401  (registers Ray's exit hook; exit hooks run last registered first)

    from wtb_prefect.services.ray_cluster import join_running_head_early, leave_ray

    atexit.register(leave_ray)
    join_running_head_early()


def known() -> dict[str, dict[str, Any]]:
    """The projects this CLI has run from this state folder, by name."""
    from wtb_prefect.define.registry import known_projects

    return known_projects()


def bench_with(*projects: Any) -> Any:
    """A test bench with ``projects`` registered."""
    from wtb_prefect.bench import WTBTestBench

    bench = WTBTestBench()
    for project in projects:
        bench.register_project(project)
    return bench


def guarded(call: Any, *args: Any, **kwargs: Any) -> Any:
    """Run ``call``; a WTBError (bad input, found before any work) exits with code 2.

    A regression (``RegressionError``, which carries its batch) is passed on, and so are
    the errors of a batch that stopped resumable (Prefect API gone, state disk full).
    """
    from wtb_prefect.analysis.comparison import RegressionError
    from wtb_prefect.errors import PrefectAPIUnavailableError, StateStorageError, WTBError

    try:
        return call(*args, **kwargs)
    except (RegressionError, PrefectAPIUnavailableError, StateStorageError):
        raise
    except WTBError as exc:
        raise fail(str(exc)) from None


def load_data_option(value: str, what: str) -> Any:
    """The value of a data option (``--case``, ``--cases``, ``--matrix``): inline JSON, a file or module:attr."""
    from wtb_prefect.define.registry import load_data

    return guarded(load_data, value, what)


def variant_choice(pairs: list[str] | None, workflow: str | None) -> dict[str, str]:
    """The variant choice given as ``--variant NODE=VARIANT`` options and ``--workflow``."""
    from wtb_prefect.define.project import WORKFLOW_KEY

    choice: dict[str, str] = {}
    for pair in pairs or []:
        node, sep, name = pair.partition("=")
        if not sep or not node or not name:
            raise fail(f"--variant {pair!r}: write NODE=VARIANT (or _workflow=NAME)")
        choice[node.strip()] = name.strip()
    if workflow:
        choice[WORKFLOW_KEY] = workflow
    return choice
