"""Limit groups: one API's limits shared by every node, variant and batch of a machine, and adaptive to 429s.

The integration tests point a real ``langchain_openai.ChatOpenAI`` at the
stand-in provider (``wtb_prefect.testing``), which logs what it served and
can enforce a rate limit with HTTP 429 and ``Retry-After``. Their windows are
a sixth of a minute (the provider's and the group's ``window_s``), so that
each test runs in well under a minute.
"""

from __future__ import annotations

import multiprocessing
import pickle
import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.graphs import llm_limited as ll
from tests.support import rate_limit_holder
from wtb_prefect import ExecutionConfig, NodeResourceConfig, RayConfig, WorkflowProject
from wtb_prefect.config import RateLimitConfig
from wtb_prefect.errors import ConfigError
from wtb_prefect.run.rate_limits import DIR_ENV, GroupLimiter
from wtb_prefect.testing import StandInProvider
from wtb_prefect.worker.rate_limit import ProviderRateLimited, rate_limited

# ─── configuration ───


@pytest.mark.parametrize(
    ("limits", "field"),
    [
        ({"max_in_flight": -1}, "rate_limits['openai'].max_in_flight"),
        ({"requests_per_minute": -5}, "rate_limits['openai'].requests_per_minute"),
        ({"tokens_per_minute": 0}, "rate_limits['openai'].tokens_per_minute"),
        ({"window_s": -1}, "rate_limits['openai'].window_s"),
    ],
)
def test_a_bad_limit_is_a_config_error_naming_the_field(limits, field):
    with pytest.raises(ConfigError) as caught:
        ExecutionConfig(rate_limits={"openai": limits})
    assert caught.value.field == field
    assert "Fix:" in str(caught.value)


def test_unknown_group_is_refused_before_any_node_runs(bench, tmp_path):
    marker = tmp_path / "ran"

    project = WorkflowProject(
        name="limits_unknown_group",
        graph_factory=ll.ask_graph,
        execution=ExecutionConfig(
            rate_limits={"openai": {"max_in_flight": 4}},
            node_resources={"review": NodeResourceConfig(rate_limit="anthropic")},
        ),
    )
    bench.register_project(project)
    with pytest.raises(ConfigError) as caught:
        bench.run_batch_test("limits_unknown_group", [{}], [{"base_url": str(marker), "question": "q"}])
    assert caught.value.field.endswith("review.rate_limit")
    assert "'anthropic'" in str(caught.value) and "'openai'" in str(caught.value)
    assert not marker.exists()


# ─── the group's state, shared by processes ───


def test_in_flight_limit_holds_across_processes(tmp_path, monkeypatch):
    """Two processes of four threads each never have more than the group's 3 calls running at once."""
    log = tmp_path / "calls.log"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=rate_limit_holder.hold, args=(str(tmp_path), str(log), 8)) for _ in range(2)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    events = sorted((int(t), kind) for t, kind in (line.split() for line in log.read_text().splitlines()))
    running = most = 0
    for _, kind in sorted(events, key=lambda e: (e[0], e[1] != "end")):
        running += 1 if kind == "start" else -1
        most = max(most, running)
    assert len(events) == 32
    assert most == 3


def test_requests_per_window_are_counted_until_a_window_after_each_call_ends(tmp_path):
    limiter = GroupLimiter("window", RateLimitConfig(requests_per_minute=4, window_s=0.5), tmp_path)
    starts = []
    for _ in range(10):
        lease = limiter.acquire(time.monotonic() + 10)
        assert not isinstance(lease, str)
        starts.append(time.time())
        limiter.release(lease)
    for i, start in enumerate(starts):
        assert sum(1 for s in starts[: i + 1] if s > start - 0.5) <= 4


def test_a_dead_process_gives_its_turns_back(tmp_path):
    limiter = GroupLimiter("dead", RateLimitConfig(max_in_flight=1), tmp_path)
    proc = multiprocessing.get_context("spawn").Process(target=time.sleep, args=(0,))
    proc.start()
    proc.join()
    with limiter._state() as state:  # a lease of a process that has ended
        state["leases"]["gone"] = [proc.pid, time.time(), time.time() + 3600]
    assert not isinstance(limiter.acquire(time.monotonic() + 2), str)


def test_what_was_short_is_named_when_the_wait_runs_out(tmp_path):
    limiter = GroupLimiter("short", RateLimitConfig(max_in_flight=1), tmp_path)
    assert not isinstance(limiter.acquire(time.monotonic() + 1), str)
    short = limiter.acquire(time.monotonic() + 0.1)
    assert isinstance(short, str) and "'short'" in short and "max_in_flight" in short


# ─── adapting ───


def test_a_rate_limit_answer_pauses_halves_and_paces_the_group(tmp_path):
    limiter = GroupLimiter("adapt", RateLimitConfig(max_in_flight=8), tmp_path)
    leases = [limiter.acquire(time.monotonic() + 1) for _ in range(8)]
    for lease in leases[:4]:
        limiter.release(lease)
    limiter.release(leases[4], rate_limited=True, retry_after=0.4)
    for lease in leases[5:]:  # in flight when the group was cut: no second cut
        limiter.release(lease, rate_limited=True, retry_after=0.4)
    state = limiter.snapshot()
    assert state["cap"] == 2.0  # four were running when the first answer came
    assert state["rate"] is not None and state["rate"] > 0
    before = time.time()
    assert not isinstance(limiter.acquire(time.monotonic() + 5), str)
    assert time.time() - before >= 0.35, "no start before the provider's Retry-After"
    assert limiter.snapshot()["rate_limited"] == 4


def test_without_retry_after_the_pause_doubles(tmp_path):
    limiter = GroupLimiter("nohdr", RateLimitConfig(), tmp_path)
    pauses = []
    for _ in range(3):
        lease = limiter.acquire(time.monotonic() + 1)
        now = time.time()
        limiter.release(lease, rate_limited=True, retry_after=None)
        pauses.append(limiter.snapshot()["pause_until"] - now)
        with limiter._state() as state:  # the pause has run out (its length is what is checked, not the wait)
            state["pause_until"] = state["next_start"] = now
    assert [round(p) for p in pauses] == [1, 2, 4]


def test_the_group_speeds_up_again_on_success(tmp_path):
    limiter = GroupLimiter("recover", RateLimitConfig(max_in_flight=4), tmp_path)
    leases = [limiter.acquire(time.monotonic() + 1) for _ in range(4)]
    limiter.release(leases[0], rate_limited=True, retry_after=0.0)
    for lease in leases[1:]:
        limiter.release(lease)
    cap = limiter.snapshot()["cap"]
    assert cap is not None and cap < 4
    for _ in range(40):
        lease = limiter.acquire(time.monotonic() + 10)
        limiter.release(lease)
    state = limiter.snapshot()
    assert state["cap"] is None, "back to the configured max_in_flight"


# ─── recognising the provider's answer ───


def test_openai_rate_limit_error_is_recognised_with_its_retry_after():
    request = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")
    response = httpx.Response(429, headers={"retry-after": "2.5"}, request=request)
    error = openai.RateLimitError("Rate limit reached", response=response, body=None)
    found = rate_limited(error)
    assert isinstance(found, ProviderRateLimited)
    assert found.retry_after == 2.5
    copy = pickle.loads(pickle.dumps(found))
    assert copy.retry_after == 2.5 and "Rate limit" in str(copy)


def test_other_errors_are_not_rate_limits():
    request = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")
    response = httpx.Response(500, request=request)
    assert rate_limited(openai.InternalServerError("boom", response=response, body=None)) is None
    assert rate_limited(ValueError("429 in the text is not enough")) is None


# ─── against the stand-in provider, through a batch ───


def _limited_project(name: str, limits: dict, **execution) -> WorkflowProject:
    project = WorkflowProject(
        name=name,
        graph_factory=ll.ask_graph,
        execution=ExecutionConfig(
            rate_limits={"llm": limits},
            default_node_resources=NodeResourceConfig(rate_limit="llm"),
            ray_config=RayConfig(max_retries=0),  # a 429 reaching Prefect would fail the execution
            node_cache="off",
            **execution,
        ),
    )
    project.register_variant("draft", "terse", ll.draft_terse)
    project.register_variant("review", "strict", ll.review_strict)
    return project


def _most_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    return max((sum(1 for t in times if s - window < t <= s) for s in times), default=0)


def test_one_group_limits_two_nodes_and_three_variants(bench, tmp_path, monkeypatch):
    """5 in flight and 20 per window of a sixth of a minute (120 a minute) hold across the batch, as the provider saw them."""
    monkeypatch.setenv(DIR_ENV, str(tmp_path))
    limits = {"max_in_flight": 5, "requests_per_minute": 20, "window_s": 10}
    bench.register_project(_limited_project("limits_shared", limits))
    matrix = [{}, {"draft": "terse"}, {"review": "strict"}]
    with StandInProvider(latency_s=0.3) as provider:
        cases = [{"base_url": provider.base_url, "question": f"question {i}"} for i in range(8)]
        batch = bench.run_batch_test("limits_shared", matrix, cases, parallelism=24)
        served = provider.requests()
        most = provider.max_in_flight_seen
    assert not batch.failed, batch.failed[0].error
    assert len(served) == 48 and all(r.status == 200 for r in served)
    assert most <= 5
    assert _most_in_window([r.started for r in served], 10.0) <= 20
    assert {r.node for res in batch.results for r in res.nodes} == {"draft", "review"}


def test_backs_off_on_429_without_spending_retries_or_timeouts(bench, tmp_path, monkeypatch):
    """The provider allows 10 requests per window of a sixth of a minute (60 a minute), 429 beyond: the batch adapts."""
    monkeypatch.setenv(DIR_ENV, str(tmp_path))
    bench.register_project(
        _limited_project("limits_backoff", {"max_in_flight": 8}, node_timeouts={"draft": 5, "review": 5})
    )
    with StandInProvider(latency_s=0.05, requests_per_minute=10, window_s=10) as provider:
        cases = [{"base_url": provider.base_url, "question": f"question {i}"} for i in range(20)]
        began = time.time()
        batch = bench.run_batch_test("limits_backoff", [{}], cases, parallelism=8)
        served = provider.requests()
    assert not batch.failed, batch.failed[0].error
    ok = [r for r in served if r.status == 200]
    refused = [r for r in served if r.status == 429]
    assert len(ok) == 40 and refused, "the provider refused some requests, and every call got through"
    later = [r for r in served if r.started > began + 10]
    later_refused = sum(1 for r in later if r.status == 429)
    print(f"{len(refused)} of {len(served)} refused; after the first window {later_refused} of {len(later)}")
    assert later_refused < 0.1 * len(later), f"{later_refused} of {len(later)} refused after the first window"
    absorbed = sum(r.rate_limited for res in batch.results for r in res.nodes)
    assert absorbed == len(refused), "every 429 was absorbed by the group, none reached Prefect"
    assert all(r.status == "completed" and r.run_s < 5 for res in batch.results for r in res.nodes)


def test_the_group_state_lives_in_the_configured_folder(tmp_path, monkeypatch):
    monkeypatch.setenv(DIR_ENV, str(tmp_path / "limits"))
    from wtb_prefect.run.rate_limits import group_limiter

    limiter = group_limiter("folder", RateLimitConfig(max_in_flight=2))
    lease = limiter.acquire(time.monotonic() + 1)
    limiter.release(lease)
    assert Path(limiter.path).parent == tmp_path / "limits"
