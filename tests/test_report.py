"""The HTML report of a batch, rendered by a real headless Chromium.

Chromium is Debian's ``chromium`` package (``.ci/run`` installs it; a test
using the ``chromium`` fixture fails, never skips, without it). The page is driven through its URL
(``#filter=regressions``, ``#page=20``) and read back with ``--dump-dom``
(the DOM after the page's script ran) and ``--screenshot``.
"""

from __future__ import annotations

import random
import subprocess
import time
import uuid
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.graphs import report_qa
from tests.support import prerequisites
from wtb_prefect import BatchTestResult, ExecutionResult, NodeRecord
from wtb_prefect.cli import EXIT_BAD_INPUT, app
from wtb_prefect.integrations.report import ReportLinks, write_report

WINDOW = "1400,1400"


@pytest.fixture(scope="session")
def chromium() -> str:
    """The Chromium binary (the ``chromium`` marker's check in conftest fails the test when there is none)."""
    binary = prerequisites.chromium_binary()
    assert binary is not None, prerequisites.chromium_problem()
    return binary


def _run_chromium(binary: str, profile: Path, url: str, *flags: str) -> str:
    profile.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--window-size={WINDOW}",
            *flags,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


class _Page(HTMLParser):
    """What the tests read from a dumped DOM: the body's attributes, grid rows and cells, links, text."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.body: dict[str, str] = {}
        self.rows: dict[str, dict[str, dict[str, str]]] = {}  # case -> variant -> cell attributes
        self.cell_text: dict[tuple[str, str], list[str]] = {}
        self.links: list[tuple[str, str, tuple[str, str] | None]] = []  # class, href, (case, variant)
        self.text: list[str] = []
        self._case: str | None = None
        self._cell: tuple[str, str] | None = None
        self._depth = 0
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "body":
            self.body = a
        elif tag == "tr" and "data-case" in a:
            self._case = a["data-case"]
            self.rows[self._case] = {}
        elif tag == "td" and "cell" in a.get("class", "").split() and self._case is not None:
            self._cell = (self._case, a["data-variant"])
            self.rows[self._case][a["data-variant"]] = a
            self._depth = 0
        elif tag == "a":
            self.links.append((a.get("class", ""), a.get("href", ""), self._cell))
        if self._cell is not None:
            self._depth += 1

    def handle_endtag(self, tag: str) -> None:
        if self._cell is not None:
            self._depth -= 1
            if self._depth == 0:
                self._cell = None
        if tag == "tr":
            self._case = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cell is not None:
            self.cell_text.setdefault(self._cell, []).append(data)

    def cell(self, case: str, variant: str) -> str:
        return " ".join(self.cell_text.get((case, variant), []))


# ─── a real batch ───


@pytest.fixture(scope="module")
def report_batch(ray_cluster) -> BatchTestResult:
    from wtb_prefect import WTBTestBench

    bench = WTBTestBench()
    bench.register_project(report_qa.report_project("report_qa"))
    return bench.run_batch_test(
        project="report_qa", variant_matrix=report_qa.MATRIX, test_cases=report_qa.CASES, parallelism=4
    )


@pytest.fixture(scope="module")
def report_file(report_batch: BatchTestResult, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report written by `wtb report BATCH_ID --html FILE` (the batch rebuilt from the execution index)."""
    path = tmp_path_factory.mktemp("report") / "batch.html"
    result = CliRunner().invoke(app, ["report", report_batch.batch_id, "--html", str(path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert str(path.resolve()) in result.output.replace("\n", "")
    return path


def test_grid_shows_every_case_variant_cell_with_its_output_links_and_error(
    report_batch, report_file, chromium, tmp_path
):
    page = _Page(_run_chromium(chromium, tmp_path / "profile", report_file.as_uri(), "--dump-dom"))
    labels = list(report_batch.by_variant())
    assert labels == ["default", "retriever=paris_rome", "retriever=no_germany"]
    assert set(page.rows) == {"paris", "rome", "berlin", "madrid"}
    for case, cells in page.rows.items():
        assert list(cells) == labels, case
        for label in labels:
            assert cells[label]["data-status"] == report_batch.get(label, case).status
    assert page.body["data-shown"] == "4" and page.body["data-page"] == "1/1"
    # each output inline: the answers of the baseline and of the wrong retriever
    assert "berlin" in page.cell("berlin", "default")
    assert "rome" in page.cell("madrid", "retriever=paris_rome")
    # a failed cell shows its error
    failed = report_batch.get("retriever=no_germany", "berlin")
    assert failed.status == "failed"
    assert "ValueError" in page.cell("berlin", "retriever=no_germany")
    assert "no document about Germany" in page.cell("berlin", "retriever=no_germany")
    # links: the cell's Prefect task runs (real ones) and its variant's MLflow run
    ok = report_batch.get("retriever=paris_rome", "madrid")
    task_links = [
        href for css, href, where in page.links if css == "task-run" and where == ("madrid", ok.variant_label)
    ]
    assert {href.rsplit("/runs/task-run/", 1)[1] for href in task_links} == {n.task_run_id for n in ok.nodes}
    assert len(task_links) == len(ok.nodes) == 2
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:  # the server records task runs from events, a moment later
        for _ in range(60):
            try:
                task_run = client.read_task_run(uuid.UUID(task_links[0].rsplit("/", 1)[1]))
                break
            except ObjectNotFound:
                time.sleep(1)
        else:
            raise AssertionError(f"task run {task_links[0]} never reached the server")
    assert task_run.name.startswith(("retriever", "answerer"))
    child = report_batch.tracking["mlflow"]["child_run_ids"][ok.variant_label]
    mlflow_links = [
        href for css, href, where in page.links if css == "mlflow-run" and where == ("madrid", ok.variant_label)
    ]
    assert len(mlflow_links) == 1 and mlflow_links[0].endswith(f"/runs/{child}")


def test_regression_filter_hides_unchanged_cases(report_file, chromium, tmp_path):
    regressions = _Page(
        _run_chromium(chromium, tmp_path / "p1", report_file.as_uri() + "#filter=regressions", "--dump-dom")
    )
    assert regressions.body["data-filter"] == "regressions"
    assert set(regressions.rows) == {"berlin", "madrid"}  # paris and rome are unchanged against the baseline
    failures = _Page(_run_chromium(chromium, tmp_path / "p2", report_file.as_uri() + "#filter=failures", "--dump-dom"))
    assert set(failures.rows) == {"berlin"}


def test_forest_plot_is_rendered(report_batch, report_file, chromium, tmp_path):
    from PIL import Image, ImageStat

    page = _Page(_run_chromium(chromium, tmp_path / "p1", report_file.as_uri(), "--dump-dom"))
    width, height = (int(x) for x in page.body["data-plot"].split("x"))
    assert width > 300 and height > 100  # the embedded PNG decoded
    text = " ".join(page.text)
    assert f"batch {report_batch.batch_id}" in text
    interval = report_batch.analysis().interval
    for expected in ("exact_match", "retriever=paris_rome", "retriever=no_germany", interval, "verdict"):
        assert expected in text
    shot = tmp_path / "report.png"
    _run_chromium(chromium, tmp_path / "p2", report_file.as_uri(), f"--screenshot={shot}")
    left, top, box_w, box_h = (int(x) for x in page.body["data-plot-box"].split(","))
    image = Image.open(shot).convert("RGB")
    plot = image.crop((left, top, left + box_w, min(top + box_h, image.height)))
    assert plot.width > 300 and plot.height > 100
    colours = plot.getcolors(maxcolors=1_000_000) or []
    assert len(colours) > 50  # points, intervals, axes and text: not a blank or single-colour box
    assert max(ImageStat.Stat(plot).stddev) > 20


def _artifacts(flow_run_id: str) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )


def _glance_rows(markdown: str) -> dict[str, dict[str, str]]:
    """The one-glance table of a summary artifact: ``{variant cell: {heading: cell}}``."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| variant |"))
    headings = [h.strip() for h in lines[start].strip("|").split("|")]
    rows: dict[str, dict[str, str]] = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(headings[1:], cells[1:], strict=True))
    return rows


def test_prefect_summary_names_the_best_variant_and_links_the_report(report_batch):
    report = Path(report_batch.tracking["report"])  # written when the batch ended
    assert report.is_file() and report.name == f"report_qa-batch-{report_batch.batch_id}.html"
    summaries = [a for a in _artifacts(report_batch.flow_run_id) if a.key == "wtb-report-qa-summary"]
    assert len(summaries) == 1 and summaries[0].type == "markdown"
    markdown = summaries[0].data
    # the one-glance answer: four cases are too few for a verdict, and it says so instead of naming a "best"
    assert "**Too few cases to tell the variants apart: 4 paired cases, a verdict needs at least 10.**" in markdown
    rows = _glance_rows(markdown)
    headings = list(rows["`default` (baseline)"])
    # quality first (success, as a case failed; then every score), latency last
    assert headings[0] == "success" and "exact_match" in headings and headings[-1] == "run s", headings
    assert rows["`default` (baseline)"]["success"] == rows["`default` (baseline)"]["exact_match"] == "1.000"
    assert rows["`retriever=paris_rome`"]["success"] == "1.000 ?"  # '?': too few cases for a verdict
    assert rows["`retriever=paris_rome`"]["exact_match"] == "0.500 ?"
    assert f"]({report.as_uri()})" in markdown and str(report) in markdown
    assert "`retriever=no_germany` case `berlin`: ValueError" in markdown  # the failure
    assert "retriever=paris_rome" in markdown


def test_batch_end_report_links_the_runs_mlflow_recorded(report_batch, report_file):
    """The report written as the batch ends takes its MLflow runs from what the batch recorded;
    `wtb report` (a batch rebuilt from the index, no record) finds the same runs in the store."""
    from wtb_prefect.integrations.report import find_links, load_batch

    recorded = report_batch.tracking["mlflow"]
    at_end, rebuilt = find_links(report_batch), find_links(load_batch(report_batch.batch_id))
    assert at_end.mlflow_runs == rebuilt.mlflow_runs == recorded["child_run_ids"]
    assert at_end.mlflow_parent_run_id == rebuilt.mlflow_parent_run_id == recorded["parent_run_id"]
    assert at_end.mlflow_experiment_id == rebuilt.mlflow_experiment_id is not None
    html = Path(report_batch.tracking["report"]).read_text()
    for run_id in recorded["child_run_ids"].values():
        assert f"/#/experiments/{at_end.mlflow_experiment_id}/runs/{run_id}" in html


def test_single_run_writes_no_summary_nor_report(bench, wtb_home):
    bench.register_project(report_qa.report_project("report_single"))
    result = bench.run(project="report_single", initial_state={"question": report_qa.CASES[0]["question"]})
    assert result.ok, result.error
    assert not [a for a in _artifacts(result.flow_run_id) if a.key == "wtb-report-single-summary"]
    assert not list((wtb_home / "reports").glob("report_single-*"))


def test_report_of_an_unknown_batch_exits_2():
    result = CliRunner().invoke(app, ["report", "no-such-batch"], catch_exceptions=False)
    assert result.exit_code == EXIT_BAD_INPUT
    assert "batch_id" in result.output and "no-such-batch" in result.output


# ─── large batches stay readable: pages of 50 cases ───


def _synthetic(cases: int, variants: int) -> BatchTestResult:
    rng = random.Random(7)
    labels = ["default", *(f"retriever=v{i}" for i in range(1, variants))]
    results = []
    for column, label in enumerate(labels):
        for case in range(cases):
            score = float(rng.random() < 0.5 + 0.05 * column)
            results.append(
                ExecutionResult(
                    execution_id=f"x-{column}-{case}",
                    project="big",
                    variant={},
                    variant_label=label,
                    status="completed",
                    initial_state={"query": f"question {case}"},
                    final_state={"query": f"question {case}", "answer": "a" * 40},
                    nodes=[
                        NodeRecord(
                            "generator",
                            "m.g",
                            "v1",
                            0.0,
                            0.01,
                            "completed",
                            output={"answer": "a" * 40},
                            task_run_id=str(uuid.uuid4()),
                        )
                    ],
                    duration_s=0.01,
                    case_id=f"case-{case:04d}",
                    scores={"accuracy": score},
                )
            )
    return BatchTestResult("big1", "big", results)


def test_a_thousand_cases_are_paginated(chromium, tmp_path):
    path = write_report(
        _synthetic(1000, 5), tmp_path / "big.html", links=ReportLinks(prefect_ui="http://127.0.0.1:4200")
    )
    assert path.stat().st_size < 8_000_000
    first = _Page(_run_chromium(chromium, tmp_path / "p1", path.as_uri(), "--dump-dom"))
    assert first.body["data-page"] == "1/20" and len(first.rows) == 50
    assert all(len(cells) == 5 for cells in first.rows.values())
    last = _Page(_run_chromium(chromium, tmp_path / "p2", path.as_uri() + "#page=20", "--dump-dom"))
    assert last.body["data-page"] == "20/20" and "case-0999" in last.rows and "case-0000" not in last.rows


def test_fifty_cases_by_five_variants_fit_one_page(chromium, tmp_path):
    path = write_report(_synthetic(50, 5), tmp_path / "mid.html", links=ReportLinks())
    page = _Page(_run_chromium(chromium, tmp_path / "p1", path.as_uri(), "--dump-dom"))
    assert page.body["data-page"] == "1/1" and len(page.rows) == 50
    assert sum(len(cells) for cells in page.rows.values()) == 250
