"""The one-glance answer and its views, opened in a real headless Chromium as a user would.

The report at 900 px (the verdict column inside the window), the disagreements
filter on a batch whose variants agree on every score, an out-of-range page,
MLflow's experiment page (the runs table, not the GenAI overview) and the
Prefect summary artifact at 1400 px (no table wider than the page).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.support.browser import Browser
from tests.test_report import _synthetic, chromium  # noqa: F401  (the session's Chromium fixture)
from wtb_prefect import BatchTestResult, ExecutionResult, NodeRecord
from wtb_prefect.integrations.report import ReportLinks, grid_data, write_report

pytestmark = pytest.mark.integration

_RIGHT_EDGE = """(selector => Array.from(document.querySelectorAll(selector))
    .map(e => e.getBoundingClientRect().right))"""


def _agreeing_batch(scored: bool) -> BatchTestResult:
    """Three variants that score the same on every case; each output names its own workspace file."""
    results = []
    for label in ("default", "retriever=v2", "retriever=v3"):
        for case in range(20):
            execution = f"{label}-{case}-{uuid.uuid4().hex[:6]}"
            answer = {"answer": f"answer {case}", "output_file": f"/tmp/wtb/workspaces/{execution}/out/{case}.json"}
            results.append(
                ExecutionResult(
                    execution_id=execution,
                    project="agree",
                    variant={},
                    variant_label=label,
                    status="completed",
                    initial_state={"query": f"question {case}", "top_k": 3},
                    final_state={"query": f"question {case}", **answer},
                    nodes=[NodeRecord("generator", "m.g", "v1", 0.0, 0.01, "completed", output=answer)],
                    duration_s=0.01,
                    case_id=f"case-{case:02d}",
                    expected={"answer": f"answer {case}"},
                    scores={"answer_hit": float(case % 3 == 0)} if scored else {},
                )
            )
    return BatchTestResult("agree1", "agree", results)


def test_report_at_900_px_shows_the_answer_and_the_verdict_column(chromium, tmp_path):  # noqa: F811
    batch = _synthetic(50, 4)
    path = write_report(batch, tmp_path / "r.html", links=ReportLinks())
    with Browser(chromium, 900, 900) as browser:
        browser.open(path.as_uri(), "document.body.getAttribute('data-page')")
        width = browser.evaluate("window.innerWidth")
        assert width == 900
        verdict = browser.evaluate(
            "Array.from(document.querySelectorAll('table.comparison th')).find(th => th.textContent === 'verdict')"
            ".getBoundingClientRect().right"
        )
        assert verdict <= width
        assert max(browser.evaluate(_RIGHT_EDGE + "('table.glance')")) <= width
        assert browser.evaluate("document.getElementById('forest').getBoundingClientRect().right") <= width
        answer = browser.evaluate("document.getElementById('answer').textContent")
        assert answer.startswith(("Pick ", "No variant is distinguishable", "Keep ")), answer
        # a page past the end says so, and shows the last one
        browser.open(path.as_uri() + "#page=3", "document.getElementById('page-notice')")
        notice = browser.evaluate("document.getElementById('page-notice').textContent")
        assert notice == "There is no page 3: 50 matching cases fill 1 page; showing page 1."
        assert browser.evaluate("document.body.getAttribute('data-page')") == "1/1"


def test_disagreements_are_decided_on_scores_never_on_paths(chromium, tmp_path):  # noqa: F811
    batch = _agreeing_batch(scored=True)
    path = write_report(batch, tmp_path / "agree.html", links=ReportLinks())
    with Browser(chromium, 1400, 1000) as browser:
        browser.open(path.as_uri() + "#filter=disagreements", "document.body.getAttribute('data-filter')")
        assert browser.evaluate("document.body.getAttribute('data-shown')") == "0"
        label = browser.evaluate("document.querySelector('a[data-filter=disagreements]').textContent")
        assert label == "disagreements (0)"
        assert browser.evaluate("document.querySelector('a[data-filter=regressions]').textContent") == "regressions (0)"
        browser.open(path.as_uri() + "#filter=all", "document.body.getAttribute('data-shown') === '20'")
        text = browser.evaluate("document.getElementById('grid').innerText")
        assert "/tmp/wtb/workspaces" not in text and "answer 7" in text  # the path hidden, the answer shown
        # inputs and expected values as fields, not escaped JSON
        fields = browser.evaluate(
            "Array.from(document.querySelectorAll('dl.input dt')).slice(0, 2).map(e => e.textContent)"
        )
        assert fields == ["query", "top_k"]
        assert '{"query"' not in text
    shown = write_report(batch, tmp_path / "paths.html", links=ReportLinks(), show_paths=True)
    assert "/tmp/wtb/workspaces" in shown.read_text()
    # nothing scored: the outputs decide, paths left out
    unscored = grid_data(_agreeing_batch(scored=False), "default", ReportLinks())
    assert not any("disagreement" in case["flags"] for case in unscored["cases"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mlflow_experiment_address_opens_the_runs_table(chromium, tmp_path):  # noqa: F811
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    from wtb_prefect.integrations.mlflow import _experiment_id, experiment_url

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = _experiment_id(client, "glance_qa", (tmp_path / "art").as_uri())
    parent = client.create_run(experiment, run_name="batch b1", tags={"wtb.kind": "batch"})
    for label, value in (("default", 0.5), ("retriever=good", 0.9)):
        run = client.create_run(experiment, run_name=label, tags={"mlflow.parentRunId": parent.info.run_id})
        client.log_batch(run.info.run_id, metrics=[Metric("answer_hit", value, 0, 0)])
        client.set_terminated(run.info.run_id)
    client.set_terminated(parent.info.run_id)
    port = _free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("mlflow")), "server", "--host", "127.0.0.1", "--port", str(port)]
        + ["--workers", "1", "--backend-store-uri", uri, "--default-artifact-root", (tmp_path / "art").as_uri()],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "mlflow server did not start"
                time.sleep(0.5)
        with Browser(chromium, 1400, 1000) as browser:
            browser.open(
                experiment_url(f"http://127.0.0.1:{port}", experiment),
                "document.body && document.body.innerText.includes('batch b1')",
                timeout=180,
            )
            text = browser.evaluate("document.body.innerText")
            assert "Run Name" in text and "3 matching runs" in text  # the runs table
            assert "No data available for the selected time range" not in text  # not the GenAI overview's charts
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(60)


@pytest.fixture(scope="module")
def quickstart_batch(ray_cluster) -> BatchTestResult:
    from examples.quickstart import project as quickstart
    from wtb_prefect import WTBTestBench

    bench = WTBTestBench()
    bench.register_project(quickstart.build_project())
    return bench.run_batch_test(
        project="quickstart_qa", variant_matrix=quickstart.VARIANT_MATRIX, test_cases=quickstart.TEST_CASES
    )


def test_prefect_summary_artifact_fits_1400_px_and_gives_the_answer(quickstart_batch, chromium):  # noqa: F811
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    from wtb_prefect.analysis.glance import one_glance
    from wtb_prefect.integrations.report import prefect_ui_url

    glance = one_glance(quickstart_batch)
    # six cases are too few for a verdict, and the answer says so instead of naming a "best"
    assert glance.answer == "Too few cases to tell the variants apart: 6 paired cases, a verdict needs at least 10."
    assert quickstart_batch.summary().answer == glance.answer
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[quickstart_batch.flow_run_id]))
        )
    summary = next(a for a in artifacts if a.key and a.key.endswith("-summary"))
    assert glance.answer in summary.data
    ui = prefect_ui_url()
    with Browser(chromium, 1400, 1000) as browser:
        for artifact in [a for a in artifacts if a.type in ("markdown", "table")]:
            browser.open(
                f"{ui}/artifacts/artifact/{artifact.id}",
                "document.querySelectorAll('table').length > 0",
                timeout=180,
            )
            page = browser.evaluate("document.documentElement.clientWidth")
            rights = browser.evaluate(_RIGHT_EDGE + "('table')")
            assert rights and max(rights) <= page, (artifact.key, rights, page)
            scrolled = browser.evaluate(
                "Array.from(document.querySelectorAll('table')).map(t => t.parentElement.scrollWidth - t.parentElement.clientWidth)"
            )
            assert max(scrolled) <= 1, (artifact.key, scrolled)  # nothing hidden behind a horizontal scroll
