"""Each distinct node call runs once: shared within a batch, cached across batches, repetitions.

Bodies count their own executions (tests/graphs/self_counting.py) in the Ray workers;
everything runs on the session's real Prefect server and Ray cluster.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.graphs import self_counting as g
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


def _with_long_answer(bench: Any, project: WorkflowProject, long_answer: Any = g.answer_long) -> None:
    """Give ``project`` the variant ``answer=long`` and register it on ``bench``."""
    project.register_variant(node="answer", name="long", implementation=long_answer)
    bench.register_project(project)


def _tag() -> str:
    return uuid.uuid4().hex[:8]


def _answers(batch: Any) -> dict[tuple[str, str, int], Any]:
    return {(r.variant_label, r.case_id, r.repetition): r.final_state for r in batch.results}


def test_variants_share_upstream_calls_and_results_equal_unshared(bench):
    tag = _tag()
    shared = _project(f"share_{tag}")
    _with_long_answer(bench, shared)
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
    _with_long_answer(bench, off)
    unshared = bench.run_batch_test(off.name, [{}, {"answer": "long"}], [{**c, "tag": tag_off} for c in cases])
    assert g.counts(tag_off, "fetch") == 8
    strip = lambda states: {k: {**v, "tag": None} for k, v in states.items()}  # noqa: E731
    assert strip(_answers(unshared)) == strip(_answers(batch))


def test_twenty_identical_calls_at_the_same_moment_run_the_body_once(bench):
    tag = _tag()
    project = _project(f"flight_{tag}", g.create_slow)
    bench.register_project(project)
    cases = [{"tag": tag, "query": "same question", "case_id": f"c{i}"} for i in range(20)]
    batch = bench.run_batch_test(project.name, [{}], cases, parallelism=20)
    assert not batch.failed
    assert g.counts(tag, "slow_fetch") == 1
    records = [r.nodes[0] for r in batch.results]
    computed = [n for n in records if n.reuse == "computed"]
    assert len(computed) == 1 and len({n.call_key for n in records}) == 1
    assert all(
        n.reuse == "shared" and n.reused_from == computed[0].task_run_id for n in records if n is not computed[0]
    )
    assert len({r.final_state["doc"] for r in batch.results}) == 1
    # every node is still a Prefect task run; the reused ones end in Prefect's Cached state, named after
    # the run they reused (its node, variant and case), not after its id
    runs = _final_task_runs([n.task_run_id for n in records])
    states = sorted(run.state.name for run in runs)
    assert states == ["Cached"] * 19 + ["Completed"]
    (origin,) = [run for run in runs if run.state.name == "Completed"]
    first = next(r for r in batch.results if r.nodes[0] is computed[0])
    assert origin.name == f"fetch | {first.variant_label} | case {first.case_id}"
    for result, run in zip(batch.results, runs, strict=True):
        if run.state.name == "Cached":
            assert run.name == f"fetch | {result.variant_label} | case {result.case_id} | reused from {origin.name}"
    # a task run's inputs are the node's input and its name, none of the dispatcher's internals
    assert all(set(run.task_inputs) == {"state", "label"} for run in runs), [sorted(r.task_inputs) for r in runs]


def test_persistent_cache_reuses_unchanged_calls_and_reruns_updated_nodes_and_downstream(bench, wtb_home):
    tag = _tag()
    project = _project(f"persist_{tag}", g.create_three, node_cache="persistent")
    bench.register_project(project)
    cases = [{"tag": tag, "query": f"q{i}"} for i in range(3)]
    first = bench.run_batch_test(project.name, [{}], cases)
    assert [g.counts(tag, n) for n in ("fetch", "answer", "polish")] == [3, 3, 3]

    second = bench.run_batch_test(project.name, [{}], cases)
    assert [g.counts(tag, n) for n in ("fetch", "answer", "polish")] == [3, 3, 3]  # zero bodies ran
    assert _answers(second) == _answers(first)
    assert {n.reuse for r in second.results for n in r.nodes} == {"cached"}
    assert second.node_calls()["cached"] == 9 and second.node_calls()["time_saved_s"] > 0

    project.update_node("answer", g.answer_v2, reason="new prompt")
    third = bench.run_batch_test(project.name, [{}], cases)
    assert g.counts(tag, "fetch") == 3  # upstream of the update: reused
    assert g.counts(tag, "answer_v2") == 3 and g.counts(tag, "polish") == 6  # the update and downstream ran
    assert all(r.final_state["answer"].startswith("V2: ") for r in third.results)

    from wtb_prefect.run.node_cache import cache_info, clear_cache

    info = cache_info(wtb_home, project.name)
    assert info[0]["entries"] == 15 and info[0]["nodes"] == 3  # 3 fetch, 6 answer (v1, v2), 6 polish
    assert clear_cache(wtb_home, project.name) == 15 and cache_info(wtb_home, project.name) == []


def test_repetitions_are_independent_samples_sharing_upstream_only_within_a_repetition(bench):
    tag = _tag()
    project = _project(f"reps_{tag}", g.create_sampled)
    _with_long_answer(bench, project)
    cases = [{"tag": tag, "query": f"q{i}"} for i in range(2)]
    batch = bench.run_batch_test(project.name, [{}, {"answer": "long"}], cases, repetitions=3)
    assert not batch.failed and len(batch) == 2 * 2 * 3
    assert len({r.execution_id for r in batch.results}) == 12
    assert sorted({r.repetition for r in batch.results}) == [0, 1, 2]
    # upstream (fetch, sample) ran once per (case, repetition), shared by both variants
    assert g.counts(tag, "fetch") == 2 * 3 and g.counts(tag, "sample") == 2 * 3
    assert g.counts(tag, "answer") == 6 and g.counts(tag, "answer_long") == 6
    assert batch.node_calls()["shared"] == 2 * 3 * 2  # fetch and sample of the second variant
    draws = {(r.variant_label, r.case_id, r.repetition): r.final_state["draw"] for r in batch.results}
    for variant in ("default", "answer=long"):
        for case in ("0", "1"):
            assert len({draws[(variant, case, rep)] for rep in range(3)}) == 3  # 3 distinct samples
    for case in ("0", "1"):
        for rep in range(3):  # paired: both variants see the same draw within a repetition
            assert draws[("default", case, rep)] == draws[("answer=long", case, rep)]


def test_an_execution_waiting_for_a_shared_call_lets_the_next_execution_start(bench):
    """parallelism counts executions computing: while case 0's second variant waits for case 0's fetch,
    case 1 starts (before, it waited for a slot until an execution of case 0 ended)."""
    tag = _tag()
    project = _project(f"aside_{tag}", g.create_long_answer)
    _with_long_answer(bench, project)
    cases = [{"tag": tag, "query": f"q{i}"} for i in range(2)]
    batch = bench.run_batch_test(project.name, [{}, {"answer": "long"}], cases, parallelism=2)
    assert not batch.failed, [str(r.error) for r in batch.failed]
    assert g.counts(tag, "long_fetch") == 2
    assert [(r.case_id, r.variant_label) for r in batch.results] == [
        ("0", "default"),
        ("0", "answer=long"),
        ("1", "default"),
        ("1", "answer=long"),
    ]
    fetches = {r.case_id: n for r in batch.results for n in r.nodes if n.node == "fetch" and n.reuse == "computed"}
    assert set(fetches) == {"0", "1"}
    first, second = fetches["0"], fetches["1"]
    assert second.started_at < first.started_at + first.duration_s  # case 1's fetch overlapped case 0's
    # still at most 2 executions computing: computed node calls never overlap more than 2 deep
    spans = [(n.started_at, n.started_at + n.duration_s) for r in batch.results for n in r.nodes]
    computed = [
        (n.started_at, n.started_at + n.duration_s) for r in batch.results for n in r.nodes if n.reuse == "computed"
    ]
    assert len(spans) == 8 and len(computed) == 6
    assert max(sum(start <= t < end for start, end in computed) for t, _ in computed) <= 2


def test_a_call_that_changed_tracked_files_is_never_reused_and_one_that_changed_none_is(bench, tmp_path):
    """The rule of sharing.py for executions that track files, through the real stack: ``read`` only
    reads a tracked file (reused by the other variant), ``write`` writes one (runs in every execution,
    so every execution's workspace has its file)."""
    from wtb_prefect.config import FileTrackingConfig

    root = tmp_path / "root"
    (root / "data").mkdir(parents=True)
    (root / "outputs").mkdir()
    (root / "data" / "notes.txt").write_text("tracked notes")
    tag = _tag()
    project = WorkflowProject(
        name=f"files_{tag}",
        graph_factory=g.create_files,
        state_schema=g.FileState,
        root=root,
        file_tracking=FileTrackingConfig(enabled=True, tracked_paths=["./data/", "./outputs/"]),
        execution=ExecutionConfig(
            ray_config=RayConfig(max_concurrent_workflows=4, max_retries=0),
            default_node_resources=NodeResourceConfig(num_cpus=0.05, memory="64MB"),
        ),
    )
    _with_long_answer(bench, project, g.answer_file_long)
    cases = [{"tag": tag, "query": f"q{i}"} for i in range(2)]
    batch = bench.run_batch_test(project.name, [{}, {"answer": "long"}], cases, parallelism=4)
    assert not batch.failed, [str(r.error) for r in batch.failed]

    # read changed no tracked file: one body per case, the other variant's call reused it
    assert g.counts(tag, "read_notes") == 2
    reads = [n for r in batch.results for n in r.nodes if n.node == "read"]
    assert sorted(n.reuse for n in reads) == ["computed", "computed", "shared", "shared"]
    assert all(r.final_state["notes"] == "tracked notes" for r in batch.results)

    # write changed tracked files: its identical calls all ran, each in its own execution's workspace
    assert g.counts(tag, "write_report") == 4
    writes = [n for r in batch.results for n in r.nodes if n.node == "write"]
    assert [n.reuse for n in writes] == ["computed"] * 4 and not any(n.reused_from for n in writes)
    workspaces = set()
    for r in batch.results:
        query = r.initial_state["query"]
        workspace = Path(r.provenance["files"]["workspace"])
        workspaces.add(workspace)
        assert (workspace / "outputs" / f"report-{query}.txt").read_text() == f"{query}: tracked notes"
    assert len(workspaces) == 4
    assert not list((root / "outputs").iterdir())  # the project root is left alone


@pytest.mark.parametrize("repetitions", [0, -1, 1.5, "2", True])
def test_bad_repetitions_fail_before_any_work(bench, repetitions):
    from wtb_prefect.errors import ConfigError

    project = _project(f"badreps_{_tag()}")
    bench.register_project(project)
    with pytest.raises(ConfigError, match="repetitions"):
        bench.run_batch_test(project.name, [{}], [{"tag": "x", "query": "q"}], repetitions=repetitions)
    assert bench.list_batches(project.name) == []


def test_a_missing_cache_storage_block_fails_before_any_work(bench):
    from wtb_prefect.errors import ConfigError

    project = _project(f"badblock_{_tag()}", node_cache="persistent", node_cache_storage="local-file-system/nope")
    bench.register_project(project)
    with pytest.raises(ConfigError, match="node_cache_storage.*nope"):
        bench.run_batch_test(project.name, [{}], [{"tag": "x", "query": "q"}])
    assert bench.list_batches(project.name) == []


def test_a_cache_in_a_storage_block_is_reused_listed_and_cleared_by_the_cli(bench, prefect_api, tmp_path):
    from prefect.filesystems import LocalFileSystem

    tag = _tag()
    block = f"cache-{tag}"
    LocalFileSystem(basepath=str(tmp_path / "block")).save(block)
    slug = f"local-file-system/{block}"
    project = _project(f"blockcache_{tag}", g.create_three, node_cache="persistent", node_cache_storage=slug)
    bench.register_project(project)
    cases = [{"tag": tag, "query": f"q{i}"} for i in range(2)]
    first = bench.run_batch_test(project.name, [{}], cases)
    second = bench.run_batch_test(project.name, [{}], cases)
    assert g.counts(tag, "fetch") == 2 and {n.reuse for r in second.results for n in r.nodes} == {"cached"}
    assert _answers(second) == _answers(first)

    def wtb(*args: str) -> str:
        env = {**os.environ, "PREFECT_API_URL": prefect_api, "COLUMNS": "200"}
        done = subprocess.run(
            [str(Path(sys.executable).with_name("wtb")), "cache", *args], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    listed = wtb("info", "--storage", slug)
    cells = [cell.strip() for cell in next(line for line in listed.splitlines() if project.name in line).split("│")]
    assert cells[1:4] == [project.name, "6", "3"], listed  # 6 entries (3 nodes x 2 cases) of 3 nodes
    assert "removed 6 node-call cache entries" in wtb("clear", "--storage", slug, "--project", project.name)
    assert not (tmp_path / "block" / project.name).exists()
    assert "no node-call cache entries" in wtb("info", "--storage", slug)
    third = bench.run_batch_test(project.name, [{}], cases)  # cleared: computed again
    assert g.counts(tag, "fetch") == 4 and _answers(third) == _answers(first)


def test_unserializable_output_is_named_and_the_batch_runs_with_that_node_uncached(bench):
    tag = _tag()
    project = _project(f"unpick_{tag}", g.create_unpicklable, node_cache="persistent", batch_executor="threadpool")
    _with_long_answer(bench, project)
    cases = [{"tag": tag, "query": "q"}]
    batch = bench.run_batch_test(project.name, [{}, {"answer": "long"}], cases, parallelism=1)
    assert not batch.failed
    errors = batch.tracking["node_calls"]["uncacheable"]
    assert len(errors) == 1 and "node 'fetch'" in errors[0]
    assert g.counts(tag, "fetch_unpicklable") == 2  # uncached: it ran for both variants
    assert all(r.final_state["doc"] == g.Unpicklable("q") for r in batch.results)


def test_opted_out_nodes_are_never_shared(bench):
    tag = _tag()
    project = _project(f"optout_{tag}", node_cache_exclude=["fetch"])
    _with_long_answer(bench, project)
    batch = bench.run_batch_test(project.name, [{}, {"answer": "long"}], [{"tag": tag, "query": "q"}])
    assert g.counts(tag, "fetch") == 2 and batch.node_calls()["reused"] == 0
    assert all(n.call_key is None for r in batch.results for n in r.nodes if n.node == "fetch")


def _task_run_states(flow_run_id: str, node: str) -> list[str]:
    """The final state names of a flow run's task runs of ``node``, as the Prefect server has them."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, TaskRunFilter, TaskRunFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
            task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_=f"{node} |")),
            limit=200,
        )
    return [run.state.name for run in runs if run.name.startswith(f"{node} |")]


def _final_task_runs(ids: list[str], timeout: float = 60.0) -> list[Any]:
    """The task runs ``ids`` once the server has recorded their final states (it does so from
    events, asynchronously)."""
    import time

    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            try:
                runs = [client.read_task_run(i) for i in ids]
                if all(run.state is not None and run.state.is_final() for run in runs) or time.monotonic() > deadline:
                    return runs
            except ObjectNotFound:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.5)


def _comparable(batch: Any) -> dict[tuple[str, str], Any]:
    """Each execution's final state (without the path of the file it wrote) and scores."""
    return {
        (r.variant_label, r.case_id): ({k: v for k, v in r.final_state.items() if k != "output_file"}, r.scores)
        for r in batch.results
    }


def test_rag_demo_runs_each_distinct_retriever_call_once(bench):
    """The demo's 5 combinations x 10 cases: BM25 is the retriever of default, generator=lead and
    _workflow=with_reranker, so 3 x 10 retriever bodies run, not 5 x 10; results equal sharing off."""

    from examples.rag.project import TEST_CASES, VARIANT_MATRIX, build_project

    cases = TEST_CASES[:10]
    project = build_project()
    bench.register_project(project)
    shared = bench.run_batch_test(project.name, VARIANT_MATRIX, cases)
    assert not shared.failed, [str(r.error) for r in shared.failed]
    _final_task_runs([n.task_run_id for r in shared.results for n in r.nodes])  # recorded from events
    states = _task_run_states(shared.flow_run_id, "retriever")
    assert sorted(states) == ["Cached"] * 20 + ["Completed"] * 30  # bodies run: 3 x 10
    records = [n for r in shared.results for n in r.nodes if n.node == "retriever"]
    assert sum(n.reuse == "computed" for n in records) == 30 and sum(n.reuse == "shared" for n in records) == 20
    assert shared.tracking["node_calls"]["time_saved_s"] > 0

    project.execution.node_cache = "off"
    unshared = bench.run_batch_test(project.name, VARIANT_MATRIX, cases)
    _final_task_runs([n.task_run_id for r in unshared.results for n in r.nodes])
    assert sorted(_task_run_states(unshared.flow_run_id, "retriever")) == ["Completed"] * 50
    assert _comparable(unshared) == _comparable(shared)


def test_resuming_a_batch_with_repetitions_reruns_nothing_that_finished(bench):
    tag = _tag()
    project = _project(f"resume_reps_{tag}")
    bench.register_project(project)
    cases = [{"tag": tag, "query": f"q{i}"} for i in range(2)]
    first = bench.run_batch_test(project.name, [{}], cases, repetitions=2)
    assert g.counts(tag, "fetch") == 4
    again = bench.run_batch_test(project.name, resume=first.batch_id)
    assert g.counts(tag, "fetch") == 4 and g.counts(tag, "answer") == 4  # nothing ran again
    key = lambda r: (r.execution_id, r.repetition, r.final_state["answer"])  # noqa: E731
    assert sorted(map(key, again.results)) == sorted(map(key, first.results))


TWIN_BATCH = """
import json

from tests.graphs import self_counting as g
from tests.test_sharing import _project
from wtb_prefect import WTBTestBench

bench = WTBTestBench()
bench.register_project(_project({name!r}, g.create_gated, node_cache="persistent"))
batch = bench.run_batch_test({name!r}, [{{}}], {cases!r}, parallelism=3)
rows = [[r.case_id, r.status, r.nodes[0].reuse, r.nodes[0].started_at, r.nodes[0].duration_s] for r in batch.results]
print(json.dumps({{"rows": rows, "mlflow": batch.tracking.get("mlflow")}}))
"""


def test_two_processes_on_one_persistent_cache_compute_each_call_once(bench, tmp_path, monkeypatch):
    """Two batches of the same calls in two processes (one state folder): while the second
    process computes each call (held in its body by a gate), this process's executions reach
    the same calls and wait; once the gate opens they reuse the values, so each call runs
    once. Both record their batch in a new MLflow store they write at the same moment."""
    import json
    import threading

    from mlflow import MlflowClient

    from tests.test_control import start_in_thread, wait_for
    from wtb_prefect.run.node_cache import sharing

    mlflow_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("WTB_MLFLOW_TRACKING_URI", mlflow_uri)
    tag = _tag()
    name = f"twin_{tag}"
    gate = tmp_path / "gate"
    cases = [{"tag": tag, "query": f"q{i}", "case_id": f"c{i}", "gate": str(gate)} for i in range(3)]
    bench.register_project(_project(name, g.create_gated, node_cache="persistent"))
    waiting: list[str] = []
    waiting_lock = threading.Lock()
    lock_call = sharing.lock_call_across_processes

    def observed_lock_call(locks_dir, key, wait_s):  # noqa: ANN001, ANN202 (the product's signature)
        if key.startswith(f"{name}/"):  # this project's calls only (a call key starts with its project)
            with waiting_lock:
                waiting.append(key)
        return lock_call(locks_dir, key, wait_s)

    monkeypatch.setattr(sharing, "lock_call_across_processes", observed_lock_call)  # observes, then the real wait
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    script = TWIN_BATCH.format(name=name, cases=cases)
    twin = subprocess.Popen([sys.executable, "-c", script], cwd=root, env=env, stdout=subprocess.PIPE, text=True)
    try:
        # the twin holds the lock of every call while its body waits at the gate
        wait_for(
            lambda: twin.poll() is not None or g.counts(tag, "gated_fetch") == 3,
            timeout=240,
            what="the second process to start computing the three calls",
        )
        assert twin.poll() is None, "the second process ended before computing its calls"
        thread, box = start_in_thread(bench.run_batch_test, name, [{}], cases, parallelism=3)
        wait_for(lambda: len(waiting) == 3, timeout=240, what="this process's three executions to reach the calls")
        gate.touch()
        thread.join(300)
        assert not thread.is_alive(), "this process's batch did not end after the gate opened"
        mine = box.get("result")
        assert mine is not None, box.get("error")
        out, _ = twin.communicate(timeout=300)
    finally:
        gate.touch()  # never leave the twin's bodies held
        if twin.poll() is None:
            twin.kill()
    assert twin.returncode == 0
    reported = json.loads(out.strip().splitlines()[-1])
    theirs = reported["rows"]
    assert not mine.failed and all(status == "completed" for _, status, *_ in theirs)
    assert g.counts(tag, "gated_fetch") == 3  # not 6: each call ran once, in the twin
    assert sorted(row[2] for row in theirs) == ["computed"] * 3
    assert [n.reuse for r in mine.results for n in r.nodes] == ["cached"] * 3
    # this process waited for the twin's calls: every reused call started before its computing call ended
    spans = {(r.case_id, r.nodes[0].reuse): (r.nodes[0].started_at, r.nodes[0].duration_s) for r in mine.results}
    spans.update({(case, how): (start, took) for case, _, how, start, took in theirs})
    for case in ("c0", "c1", "c2"):
        computed_start, computed_took = spans[(case, "computed")]
        assert spans[(case, "cached")][0] < computed_start + computed_took
    assert {r.final_state["doc"] for r in mine.results} == {f"gated doc about q{i}" for i in range(3)}
    # neither process lost its MLflow record to the other's migration of the new store
    parents = {mine.tracking["mlflow"]["parent_run_id"], reported["mlflow"]["parent_run_id"]}
    runs = MlflowClient(tracking_uri=mlflow_uri).search_runs(
        [MlflowClient(tracking_uri=mlflow_uri).get_experiment_by_name(name).experiment_id],
        filter_string="tags.`wtb.kind` = 'batch'",
    )
    assert {run.info.run_id for run in runs} == parents and {run.info.status for run in runs} == {"FINISHED"}


HOLD_LOCK = """
import sys, time
from filelock import FileLock
lock = FileLock(sys.argv[1])
lock.acquire()
print("held", flush=True)
time.sleep(120)
"""
# The holder takes the very lock file lock_call_across_processes uses (its path read from a lock
# taken and released here first), with the library it uses, and imports nothing else: a stuck
# process needs none of the node cache's Prefect and LangGraph imports.


def test_a_call_locked_by_a_stuck_process_runs_after_the_longest_wait_and_a_dead_one_frees_it(tmp_path, caplog):
    """No wait on another process's call hangs a batch: past the longest a call can take it
    runs here (paid twice rather than never); a process that dies releases its lock at once."""
    import logging
    import time

    from wtb_prefect.run.node_cache import lock_call_across_processes

    key = "proj/fetch/0123abcd"
    mine = lock_call_across_processes(tmp_path, key, wait_s=0)
    assert mine is not None
    lock_file = mine.lock_file
    mine.release()
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, lock_file], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        start = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="wtb_prefect.run.node_cache.locks"):
            assert lock_call_across_processes(tmp_path, key, wait_s=0.5) is None
        assert time.monotonic() - start >= 0.5
        assert "computing it here instead" in caplog.text
    finally:
        holder.kill()
        holder.wait(30)
    start = time.monotonic()
    lock = lock_call_across_processes(tmp_path, key, wait_s=30.0)  # the dead holder's lock is gone
    assert lock is not None and lock.is_locked and time.monotonic() - start < 5.0
    lock.release()
