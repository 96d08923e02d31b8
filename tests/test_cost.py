"""What a variant costs: tokens booked per node with no user code, money saved by sharing, budgets, estimates.

Every node calls a real ``ChatOpenAI`` against the stand-in provider
(:mod:`wtb_prefect.testing`) on 127.0.0.1, on the session's real Prefect
server and Ray cluster; what was booked is checked against the provider's
own request log.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.graphs import llm_costed as g
from wtb_prefect import ExecutionConfig, NodeResourceConfig, RayConfig, WorkflowProject
from wtb_prefect.errors import ConfigError
from wtb_prefect.testing import StandInProvider

KINDS = ("input", "output", "cache_read", "reasoning", "calls")


@pytest.fixture(scope="module")
def provider() -> Any:
    with StandInProvider(latency_s=0.02) as p:
        yield p


def _project(name: str, factory: Any = g.pipeline, **execution: Any) -> WorkflowProject:
    execution.setdefault("ray_config", RayConfig(max_concurrent_workflows=4, max_retries=0))
    project = WorkflowProject(
        name=name,
        graph_factory=factory,
        state_schema=g.Doc,
        execution=ExecutionConfig(
            default_node_resources=NodeResourceConfig(num_cpus=0.05, memory="64MB"),
            node_resources={
                "plan": NodeResourceConfig(num_cpus=0.05, memory="64MB", io_bound=False),  # a Ray task per call
                "polish": NodeResourceConfig(num_cpus=0.05, memory="64MB", io_bound=True),  # the threaded lane
            },
            checkpoint_storage="memory",
            **execution,
        ),
    )
    if factory is g.pipeline:
        project.register_variant(node="plan", name="terse", implementation=g.plan_terse)
        project.register_variant(node="draft", name="long", implementation=g.draft_long)
    return project


def _cases(provider: StandInProvider, n: int, tag: str) -> list[dict[str, Any]]:
    return [{"base_url": provider.base_url, "question": f"{tag} question number {i} about cost"} for i in range(n)]


def _booked(batch: Any) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for result in batch.results:
        for record in result.nodes:
            for model, counts in (record.usage or {}).items():
                row = out.setdefault(model, dict.fromkeys(KINDS, 0))
                for kind in KINDS:
                    row[kind] += counts.get(kind, 0)
    return out


def _spent(batch: Any) -> float:
    return sum(r.cost_usd for r in batch.results)


def _saved(batch: Any) -> float:
    return sum(r.saved_usd for r in batch.results)


def test_tokens_booked_per_node_equal_the_provider_log(bench: Any, provider: StandInProvider) -> None:
    """Ray task (plan), async lane (draft), threaded lane streaming (polish), a ReAct agent inside a node."""
    tag = uuid.uuid4().hex[:8]
    project = _project(f"cost_attr_{tag}", node_cache="off")
    bench.register_project(project)
    provider.reset()
    batch = bench.run_batch_test(project.name, [{}, {"plan": "terse", "draft": "long"}], _cases(provider, 3, tag))
    assert not batch.failed, [str(r.error) for r in batch.failed]
    assert all(e.status == 200 for e in provider.requests())
    assert _booked(batch) == provider.usage_by_model()  # every request, every kind of token, per model
    by_node = {g.MODELS[n]: n for n in ("plan", "draft", "polish", "agent")}
    for result in batch.results:
        for record in result.nodes:
            assert set(record.usage) == {g.MODELS[record.node]}, (record.node, record.usage)
            calls = record.usage[g.MODELS[record.node]]["calls"]
            expected = {"plan": 1, "draft": 2 if "long" in result.variant_label else 1, "polish": 1, "agent": 2}
            assert calls == expected[record.node], (record.node, result.variant_label)
            assert record.cost_usd > 0 and record.unpriced_models is None
        lanes = {record.node: record.lane for record in result.nodes}
        assert (lanes["plan"], lanes["draft"], lanes["polish"]) == ("task", "io", "io"), lanes
        metrics = result.metrics
        assert metrics["cost_usd"] == pytest.approx(sum(n.cost_usd for n in result.nodes))
        assert metrics["tokens.input"] == sum(n.usage[g.MODELS[n.node]]["input"] for n in result.nodes)
        assert metrics["node.agent.llm_calls"] == 2
    assert set(by_node) == set(provider.usage_by_model())
    _assert_report_and_mlflow_show_cost(batch)


def _assert_report_and_mlflow_show_cost(batch: Any) -> None:
    """The HTML report's grid has each cell's cost and each variant's spend; each MLflow variant run its totals."""
    from mlflow import MlflowClient

    from wtb_prefect.integrations.mlflow import tracking_uri
    from wtb_prefect.integrations.report import ReportLinks, grid_data, render_report

    groups = batch.by_variant()
    grid = grid_data(batch, next(iter(groups)), ReportLinks())
    by_id = {r.execution_id: r for r in batch.results}
    cells = [cell for case in grid["cases"] for cell in case["cells"]]
    assert len(cells) == len(batch.results)
    for cell in cells:
        assert cell["c"] == pytest.approx(by_id[cell["x"]].cost_usd, abs=1e-6) and cell["c"] > 0
    for label, group in groups.items():
        assert grid["costs"][label]["spent"] == pytest.approx(sum(r.cost_usd for r in group), abs=1e-6)
    assert '"costs":{' in render_report(batch, ReportLinks())  # the page carries them to its script
    client = MlflowClient(tracking_uri())
    for label, run_id in batch.tracking["mlflow"]["child_run_ids"].items():
        group, metrics = groups[label], client.get_run(run_id).data.metrics
        assert metrics["spent_usd.total"] == pytest.approx(sum(r.cost_usd for r in group))
        assert metrics["saved_usd.total"] == 0.0  # node_cache off: nothing reused
        assert metrics["cost_usd"] == pytest.approx(sum(r.cost_usd for r in group) / len(group))
        tokens = sum(counts["input"] for r in group for counts in r.usage.values())
        assert metrics["tokens.input.total"] == tokens > 0
    parent = client.get_run(batch.tracking["mlflow"]["parent_run_id"]).data.metrics
    assert parent["spent_usd.total"] == pytest.approx(_spent(batch))


def test_sharing_books_saved_dollars_that_reconcile_with_an_unshared_batch(
    bench: Any, provider: StandInProvider
) -> None:
    tag = uuid.uuid4().hex[:8]
    cases = _cases(provider, 3, tag)
    matrix = [{}, {"draft": "long"}]  # plan's calls are the same in both variants: shared
    shared = _project(f"cost_shared_{tag}")
    off = _project(f"cost_off_{tag}", node_cache="off")
    for p in (shared, off):
        bench.register_project(p)
    with_sharing = bench.run_batch_test(shared.name, matrix, cases)
    without = bench.run_batch_test(off.name, matrix, cases)
    assert not with_sharing.failed and not without.failed
    assert with_sharing.node_calls()["shared"] >= 3
    assert _saved(with_sharing) > 0 and _saved(without) == 0
    assert round(_spent(with_sharing) + _saved(with_sharing), 2) == round(_spent(without), 2)
    assert _spent(with_sharing) + _saved(with_sharing) == pytest.approx(_spent(without), rel=1e-9)
    cost = with_sharing.tracking["cost"]
    assert cost["spent_usd"] == pytest.approx(_spent(with_sharing)) and cost["saved_usd"] == pytest.approx(
        _saved(with_sharing)
    )
    # a warm persistent cache spends nothing and saves what the first batch spent
    warm = _project(f"cost_warm_{tag}", node_cache="persistent")
    bench.register_project(warm)
    first = bench.run_batch_test(warm.name, [{}], cases)
    provider.reset()
    again = bench.run_batch_test(warm.name, [{}], cases)
    assert _spent(again) == 0 and provider.requests() == []
    assert _saved(again) == pytest.approx(_spent(first), rel=1e-9)


def test_a_budget_stops_new_calls_and_a_resume_finishes_exactly_the_rest(bench: Any, provider: StandInProvider) -> None:
    tag = uuid.uuid4().hex[:8]
    calibrate = _project(f"cost_cal_{tag}", node_cache="off")
    bench.register_project(calibrate)
    one = bench.run_batch_test(calibrate.name, [{}], _cases(provider, 1, tag))
    per_execution = _spent(one)
    project = _project(f"cost_budget_{tag}", node_cache="off")
    bench.register_project(project)
    cases = _cases(provider, 6, tag)
    budget = 2 * per_execution  # the batch costs about three times this
    provider.reset()
    stopped = bench.run_batch_test(project.name, [{}], cases, parallelism=2, budget_usd=budget)
    cost = stopped.tracking["cost"]
    assert cost["outcome"] == "budget_exceeded" and cost["batch_id"] == stopped.batch_id
    assert cost["spent_usd"] >= budget
    # calls in flight when the budget was reached finished: at most one node call per slot beyond it
    assert cost["spent_usd"] <= budget + 2 * per_execution
    first_calls = len(provider.requests())
    assert first_calls < 6 * 5  # five calls per execution: not everything ran
    resumed = bench.run_batch_test(project.name, resume=stopped.batch_id, budget_usd=10 * per_execution * 6)
    assert resumed.tracking["cost"]["outcome"] == "completed"
    assert len(resumed.results) == 6 and not resumed.failed
    assert len(provider.requests()) == 6 * 5  # nothing that finished ran again
    assert len({r.final_state["answer"] for r in resumed.results}) == 6


def test_an_execution_over_its_cost_limit_stops_and_the_others_complete(bench: Any, provider: StandInProvider) -> None:
    tag = uuid.uuid4().hex[:8]
    project = _project(
        f"cost_loop_{tag}",
        g.looping_agent,
        node_cache="off",
        max_cost_per_execution=0.0005,
        recursion_limit=10_000,
    )
    bench.register_project(project)
    cases = [
        {"base_url": provider.base_url, "question": f"{tag} first", "case_id": "ok1"},
        {"base_url": provider.base_url, "question": f"{tag} loop forever", "case_id": "loop"},
        {"base_url": provider.base_url, "question": f"{tag} second", "case_id": "ok2"},
    ]
    batch = bench.run_batch_test(project.name, [{}], cases)
    by_case = {r.case_id: r for r in batch.results}
    assert by_case["ok1"].ok and by_case["ok2"].ok
    looped = by_case["loop"]
    assert looped.status == "failed" and looped.error.type == "CostLimitExceeded"
    assert 0.0005 <= looped.cost_usd < 0.0005 + max(n.cost_usd for n in looped.nodes) * 1.01


def test_an_estimate_from_history_is_within_a_quarter_of_what_the_batch_spends(
    bench: Any, provider: StandInProvider
) -> None:
    tag = uuid.uuid4().hex[:8]
    project = _project(f"cost_est_{tag}")
    bench.register_project(project)
    history = bench.run_batch_test(project.name, [{}, {"plan": "terse", "draft": "long"}], _cases(provider, 3, tag))
    assert not history.failed
    matrix = [{}, {"plan": "terse", "draft": "long"}, {"plan": "terse"}, {"draft": "long"}]
    cases = _cases(provider, 6, f"{tag}b")
    provider.reset()
    estimate = bench.estimate_batch(project.name, matrix, cases)
    assert provider.requests() == [] and estimate.no_history == []  # nothing ran to estimate
    batch = bench.run_batch_test(project.name, matrix, cases)
    assert estimate.total_usd == pytest.approx(_spent(batch), rel=0.25)
    unknown = bench.estimate_batch(f"cost_est_{tag}", [{}], cases)  # same project: every node known
    assert unknown.no_history == []


def test_bad_budgets_and_prices_fail_before_any_work(bench: Any, provider: StandInProvider, tmp_path: Any) -> None:
    tag = uuid.uuid4().hex[:8]
    project = _project(f"cost_bad_{tag}")
    bench.register_project(project)
    provider.reset()
    for bad in (-1, "lots", float("nan")):
        with pytest.raises(ConfigError) as info:
            bench.run_batch_test(project.name, [{}], _cases(provider, 1, tag), budget_usd=bad)
        assert info.value.field == "budget_usd"
    with pytest.raises(ConfigError, match="max_cost_per_execution"):
        ExecutionConfig(max_cost_per_execution=-0.5)
    with pytest.raises(ConfigError, match=r"prices\['gpt-4o'\]\.output"):
        ExecutionConfig(prices={"gpt-4o": {"input": 1.0, "output": "free"}})
    unknown = _project(f"cost_badfile_{tag}", prices=str(tmp_path / "no-such-prices.yaml"))
    bench.register_project(unknown)
    with pytest.raises(ConfigError) as info:
        bench.run_batch_test(unknown.name, [{}], _cases(provider, 1, tag))
    assert info.value.field == "execution.prices" and "does not exist" in str(info.value)
    assert provider.requests() == []  # no node ran
    assert bench.list_batches(unknown.name) == [] and bench.list_batches(project.name) == []
