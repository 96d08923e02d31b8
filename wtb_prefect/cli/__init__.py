"""The ``wtb`` command line: one module per command group, as Prefect's CLI is laid out.

:mod:`~wtb_prefect.cli.root` holds the application (``wtb_prefect.cli:app`` is
the console script); importing each command module registers its commands.

Exit codes: 0 ok; 1 an execution failed; 2 bad input (nothing ran); 3 a
regression against the baseline (``wtb batch --tolerance``).
"""

from __future__ import annotations

# The import order is the order of the commands in `wtb --help`.
# isort: off
from wtb_prefect.cli import services, server, demo, runs, report, cache, projects, executions  # noqa: F401

# isort: on
from wtb_prefect.cli.root import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_REGRESSION, app

__all__ = ["EXIT_BAD_INPUT", "EXIT_FAILED", "EXIT_REGRESSION", "app"]
