"""A driver process of the isolated-cluster tests: one batch of ``iso_graph``'s project, its outcome as JSON.

The test copies this file and ``tests/graphs/on_isolated_node.py`` (as
``iso_graph.py``) into a project folder of its own and runs ``python
drive.py`` there, so the driver ships that folder as a user's would. Settings
come from ``WTB_ISO_SPEC`` (JSON: ``cases``, ``on_node``, ``probe_timeout``,
``checkout_file``, ``kill_file``); the last line it prints is ``OUTCOME
<json>``: every execution's status and final state (or error), and how many
code packages the driver pushed to the cluster, or the typed error the batch
raised.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path

SPEC = json.loads(os.environ.get("WTB_ISO_SPEC", "{}"))
pushed: list[str] = []


class _CountUploads(logging.Handler):
    """Ray logs each package it uploads to the cluster (an unchanged one is not uploaded again)."""

    def emit(self, record: logging.LogRecord) -> None:
        if "Pushing file package" in record.getMessage():
            pushed.append(record.getMessage())


def _watch_uploads() -> None:
    packaging = logging.getLogger("ray._private.runtime_env.packaging")
    packaging.addHandler(_CountUploads())
    packaging.setLevel(logging.INFO)


def _row(result) -> dict:  # noqa: ANN001 (an ExecutionResult)
    row = {"variant": result.variant_label, "case": result.case_id, "status": result.status}
    if result.status == "completed":
        row["state"] = {k: v for k, v in result.final_state.items() if k not in ("checkout_file", "sleep_s")}
    else:
        row["error"] = {"type": result.error.type, "message": result.error.message}
    row["nodes"] = {r.node: {"run_s": r.run_s, "queue_s": r.queue_s, "status": r.status} for r in result.nodes}
    return row


def main() -> dict:
    _watch_uploads()
    import iso_graph

    from wtb_prefect import WTBTestBench
    from wtb_prefect.errors import WTBError

    project = iso_graph.make_project(
        on_node=SPEC.get("on_node", True),
        probe_timeout=SPEC.get("probe_timeout", 60),
        address=SPEC.get("address", "auto"),
    )
    bench = WTBTestBench()
    bench.register_project(project)
    cases = [
        {"x": x, "checkout_file": SPEC["checkout_file"], "sleep_s": SPEC.get("sleep_s", 0.0)}
        for x in range(SPEC.get("cases", 3))
    ]
    kill_file = SPEC.get("kill_file")
    started = time.monotonic()

    def on_result(result) -> None:  # noqa: ANN001
        if kill_file:  # the test kills the node once the first execution ended
            Path(kill_file).touch()

    try:
        batch = bench.run_batch_test(
            project.name, [{}, {"probe": "bm25"}], cases, parallelism=SPEC.get("parallelism", 3), on_result=on_result
        )
    except WTBError as exc:
        return {
            "raised": type(exc).__name__,
            "classes": [c.__name__ for c in type(exc).__mro__],
            "message": str(exc),
            "seconds": time.monotonic() - started,
            "pushed": len(pushed),
        }
    return {
        "results": [_row(r) for r in batch],
        "batch_id": batch.batch_id,
        "seconds": time.monotonic() - started,
        "pushed": len(pushed),
        "packages": pushed,
    }


if __name__ == "__main__":
    outcome = main()
    sys.stdout.flush()
    print("OUTCOME " + json.dumps(outcome, default=str), flush=True)
