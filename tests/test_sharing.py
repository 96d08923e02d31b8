"""Each distinct node call runs once: shared within a batch, cached across batches, repetitions.

Bodies count their own executions (tests/sharing_graphs.py) in the Ray workers;
everything runs on the session's real Prefect server and Ray cluster.
"""

from __future__ import annotations

import uuid
from typing import Any

from tests import sharing_graphs as g
from wtb_prefect import ExecutionConfig, NodeResourceConfig, RayConfig, WorkflowProject


def _project(name: str, factory: Any = g.create_fetch_answer, **execution: Any) -> WorkflowProject:
    project = WorkflowProject(
        name=name,
        graph_factory=factory,
        state_schema=g.CountState,
        execution=ExecutionConfig(
            ray_config=RayConfig(max_concurrent_workflows=20, max_retries=0),
            default_node_resources=NodeResourceConfig(num_cpus=0.05, memory="64MB"),
            checkpoint_storage="memory",
            **execution,
        ),
    )
    return project


def _tag() -> str:
    return uuid.uuid4().hex[:8]


def _answers(batch: Any) -> dict[tuple[str, str, int], Any]:
    return {(r.variant_label, r.case_id, r.repetition): r.final_state for r in batch.results}


def test_variants_share_upstream_calls_and_results_equal_unshared(bench):
    tag = _tag()
    shared = _project(f"share_{tag}")
    shared.register_variant(node="answer", name="long", implementation=g.answer_long)
    bench.register_project(shared)
    cases = [{"tag": tag, "query": f"q{i}"} for i in range(4)]
    batch = bench.run_batch_test(shared.name, [{}, {"answer": "long"}], cases)
    assert not batch.failed
    assert g.counts(tag, "fetch") == 4  # not 8: both variants reuse the same fetch calls
    assert g.counts(tag, "answer") == 4 and g.counts(tag, "answer_long") == 4
    calls = batch.node_calls()
    assert (calls["computed"], calls["shared"], calls["cached"]) == (12, 4, 0)
    reused = [n for r in batch.results for n in r.nodes if n.reuse == "shared"]
    assert {n.node for n in reused} == {"fetch"} and all(n.reused_from and n.call_key for n in reused)
    assert calls["time_saved_s"] > 0

    tag_off = _tag()
    off = _project(f"noshare_{tag_off}", node_cache="off")
    off.register_variant(node="answer", name="long", implementation=g.answer_long)
    bench.register_project(off)
    unshared = bench.run_batch_test(off.name, [{}, {"answer": "long"}], [{**c, "tag": tag_off} for c in cases])
    assert g.counts(tag_off, "fetch") == 8
    strip = lambda states: {k: {**v, "tag": None} for k, v in states.items()}  # noqa: E731
    assert strip(_answers(unshared)) == strip(_answers(batch))
