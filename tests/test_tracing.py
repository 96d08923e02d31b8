"""OpenTelemetry spans batch -> execution -> node -> worker, across Ray worker processes."""

from __future__ import annotations

import http.server
import os
import threading
from collections import Counter

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from tests.graphs import scored_qa
from wtb_prefect.run import spans as tracing


@pytest.fixture()
def exporter():
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracing.configure_tracing(provider)
    yield memory
    tracing.configure_tracing(None)


def test_spans_nest_batch_execution_node_worker_across_processes(bench, exporter):
    bench.register_project(scored_qa.qa_project("trace_qa"))
    batch = bench.run_batch_test(
        project="trace_qa",
        variant_matrix=[{}, {"retriever": "broken"}],
        test_cases=scored_qa.CASES[:2],
        parallelism=2,
    )
    spans = exporter.get_finished_spans()
    by_id = {s.context.span_id: s for s in spans}
    names = Counter(s.name for s in spans)
    assert names["wtb.batch"] == 1 and names["wtb.execution"] == 4
    # default: retriever + answerer on 2 cases; broken: the retriever fails on 2 cases
    assert names["wtb.node retriever"] == 4 and names["wtb.node answerer"] == 2
    assert names["wtb.worker retriever"] == 4 and names["wtb.worker answerer"] == 2

    root = next(s for s in spans if s.name == "wtb.batch")
    assert root.parent is None
    assert root.attributes["wtb.project"] == "trace_qa" and root.attributes["wtb.batch_id"] == batch.batch_id
    assert root.attributes["prefect.flow_run.id"] == batch.flow_run_id
    assert batch.tracking["trace_id"] == format(root.context.trace_id, "032x")
    assert {s.context.trace_id for s in spans} == {root.context.trace_id}  # one trace

    executions = {s.attributes["wtb.execution_id"]: s for s in spans if s.name == "wtb.execution"}
    assert set(executions) == {r.execution_id for r in batch}
    for result in batch:
        span = executions[result.execution_id]
        assert span.parent.span_id == root.context.span_id
        assert span.attributes["wtb.variant"] == result.variant_label
        assert span.attributes["wtb.case_id"] == result.case_id
        assert span.attributes["wtb.status"] == result.status
        assert span.status.status_code == (StatusCode.OK if result.ok else StatusCode.ERROR)

    driver_pid = os.getpid()
    for node_span in (s for s in spans if s.name.startswith("wtb.node ")):
        parent = by_id[node_span.parent.span_id]
        assert parent.name == "wtb.execution"
        assert parent.attributes["wtb.execution_id"] == node_span.attributes["wtb.execution_id"]
        assert node_span.attributes["wtb.node"] == node_span.name.split()[1]
        assert node_span.attributes["wtb.resources.num_cpus"] == 0.25
        assert node_span.attributes["process.pid"] == driver_pid
        assert node_span.attributes["wtb.case_id"] in {"paris", "rome"}

    workers = [s for s in spans if s.name.startswith("wtb.worker ")]
    for worker in workers:
        parent = by_id[worker.parent.span_id]
        assert parent.name == worker.name.replace("wtb.worker", "wtb.node")  # child of its node span
        assert worker.attributes["process.pid"] != driver_pid  # ran in a Ray worker process
        assert worker.attributes["ray.task_id"] and worker.attributes["prefect.task_run.id"]
        assert worker.start_time >= parent.start_time and worker.end_time <= parent.end_time
    # the pid on the worker span is the process the node body ran in
    for result in batch:
        if result.ok:
            answer_node = next(
                s
                for s in spans
                if s.name == "wtb.node answerer" and s.attributes["wtb.execution_id"] == result.execution_id
            )
            answer_worker = next(s for s in workers if s.parent.span_id == answer_node.context.span_id)
            assert answer_worker.attributes["process.pid"] == result.final_state["worker_pid"]
            assert answer_node.attributes["wtb.metric.cost"] == 0.75
            assert answer_node.attributes["wtb.status"] == "completed"

    # a failing node: its node span and worker span say so; its metrics still arrived
    failed = next(r for r in batch if not r.ok)
    node_span = next(
        s for s in spans if s.name == "wtb.node retriever" and s.attributes["wtb.execution_id"] == failed.execution_id
    )
    assert node_span.status.status_code == StatusCode.ERROR and node_span.attributes["wtb.status"] == "failed"
    worker_span = next(s for s in workers if s.parent.span_id == node_span.context.span_id)
    assert worker_span.status.status_code == StatusCode.ERROR
    assert any(
        e.name == "exception" and "retriever index is missing" in e.attributes["exception.message"]
        for e in worker_span.events
    )
    record = next(r for r in failed.nodes if r.node == "retriever")
    assert record.status == "failed" and record.metrics == {"tokens": 2.0}


def test_no_exporter_by_default_records_nothing(monkeypatch):
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    monkeypatch.delenv("WTB_TRACE_CONSOLE", raising=False)
    tracing.configure_tracing(None)
    provider = tracing.get_tracer_provider()
    assert provider is trace.get_tracer_provider()
    assert not provider.get_tracer("x").start_span("probe").is_recording()


def test_console_exporter_by_flag(monkeypatch, capfd):
    monkeypatch.setenv("WTB_TRACE_CONSOLE", "1")
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    tracing.configure_tracing(None)
    tracing.get_tracer_provider().get_tracer("t").start_span("console-probe").end()
    assert '"name": "console-probe"' in capfd.readouterr().out


def test_otlp_exporter_when_endpoint_is_set(monkeypatch):
    received: list[tuple[str, bytes]] = []

    class Collector(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, body))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
        monkeypatch.delenv("WTB_TRACE_CONSOLE", raising=False)
        tracing.configure_tracing(None)
        provider = tracing.get_tracer_provider()
        provider.get_tracer("t").start_span("otlp-probe").end()
        assert provider.force_flush(10_000)
    finally:
        server.shutdown()
    assert received and received[0][0] == "/v1/traces"
    assert b"otlp-probe" in received[0][1]


def test_threadpool_executor_nodes_report_metrics_and_spans(bench, exporter):
    """Without Ray the node body runs in the flow process: same metrics, node spans, no worker spans."""
    bench.register_project(scored_qa.qa_project("trace_threadpool", executor="threadpool"))
    batch = bench.run_batch_test(project="trace_threadpool", variant_matrix=[{}], test_cases=scored_qa.CASES[:1])
    result = batch.results[0]
    assert result.ok, result.error
    assert {r.node: r.metrics for r in result.nodes} == {
        "retriever": {"tokens": 6.0},
        "answerer": {"tokens": 1.0, "cost": 0.75},
    }
    names = Counter(s.name for s in exporter.get_finished_spans())
    assert names["wtb.node retriever"] == 1 and names["wtb.node answerer"] == 1
    assert not any(name.startswith("wtb.worker") for name in names)
