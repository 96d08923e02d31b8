"""Entry point of the embedded Prefect server process: ``prefect server start`` with a calmer idle loop.

Prefect's server runs its background services on a docket worker that, with
the in-memory backend, polls for due work every 250 ms. On an idle server that
polling is most of its CPU; once a second is enough for a local test bench
(background work such as marking runs late or reaping leases waits at most a
second longer). Everything else is Prefect's own CLI, unchanged.
"""

from __future__ import annotations

import inspect
import logging
import sys
from datetime import timedelta

_POLL = timedelta(seconds=1)


def _calm_docket_worker() -> None:
    try:
        from docket.worker import Worker

        init = Worker.__init__
        names = [n for n, p in inspect.signature(init).parameters.items() if p.default is not inspect.Parameter.empty]
        defaults = list(init.__defaults__ or ())
        for name in ("minimum_check_interval", "scheduling_resolution"):
            if name in names and len(defaults) == len(names):
                defaults[names.index(name)] = _POLL
        init.__defaults__ = tuple(defaults)
    except Exception:  # another docket version: run with Prefect's defaults
        logging.getLogger(__name__).debug("docket worker defaults left unchanged", exc_info=True)


def main() -> None:
    """Run ``prefect <argv>`` (normally ``server start ...``) in this process."""
    _calm_docket_worker()
    from prefect.cli import app

    sys.argv = ["prefect", *sys.argv[1:]]
    sys.exit(app())


if __name__ == "__main__":
    main()
