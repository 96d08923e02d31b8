"""The stand-in provider with the real ChatOpenAI client, the price table, and usage capture in a node body.

Unit tests: the stand-in serves from a thread of the test process (or a child
process), and no Prefect server or Ray cluster is involved.
"""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.error
import urllib.request
import warnings
from pathlib import Path
from typing import Annotated, Any, TypedDict

import openai
import pytest
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from langgraph.errors import GraphRecursionError
from langgraph.graph import END, START, StateGraph
from langgraph.prebuilt import create_react_agent

from wtb_prefect.errors import ConfigError
from wtb_prefect.pricing import ModelPrice, PriceTable, UnpricedModelWarning
from wtb_prefect.testing import StandInProvider
from wtb_prefect.worker.usage import capturing_usage


@pytest.fixture(scope="module")
def provider() -> Any:
    with StandInProvider() as p:
        yield p


@pytest.fixture(autouse=True)
def _fresh_log(request: pytest.FixtureRequest) -> None:
    if "provider" in request.fixturenames:
        p = request.getfixturevalue("provider")
        p.configure(latency_s=0.0, tool_mode="once", max_in_flight=None, requests_per_minute=None)
        p.reset()


def allm(provider: StandInProvider, model: str = "gpt-4o-mini") -> ChatOpenAI:
    """A model for one ``asyncio.run``: LangChain caches its async HTTP client per base URL, and a pooled
    connection of a closed event loop cannot serve the next loop."""
    return llm(provider, model, http_async_client=openai.DefaultAsyncHttpxClient())


def llm(provider: StandInProvider, model: str = "gpt-4o-mini", **kw: Any) -> ChatOpenAI:
    kw.setdefault("stream_usage", True)
    return ChatOpenAI(base_url=provider.base_url, api_key="stand-in", model=model, **kw)


def booked(message: Any) -> tuple[int, int, int, int]:
    u = message.usage_metadata
    return (
        u["input_tokens"],
        u["output_tokens"],
        u["input_token_details"]["cache_read"],
        u["output_token_details"]["reasoning"],
    )


def served(entry: Any) -> tuple[int, int, int, int]:
    return entry.prompt_tokens, entry.completion_tokens, entry.cached_tokens, entry.reasoning_tokens


@tool
def lookup(query: str) -> str:
    """Look a fact up."""
    return f"a fact about {query}"


# ─── the stand-in provider ───


def test_sync_calls_get_deterministic_answers_and_the_usage_the_log_shows(provider: StandInProvider) -> None:
    first = llm(provider).invoke("What is the capital of France?")
    again = llm(provider).invoke("What is the capital of France?")
    other = llm(provider).invoke("Something else entirely, and longer than the first question")
    assert first.content == again.content and first.usage_metadata == again.usage_metadata
    assert other.content != first.content
    log = provider.requests()
    assert [e.status for e in log] == [200, 200, 200]
    assert [booked(m) for m in (first, again, other)] == [served(e) for e in log]
    assert all(e.cached_tokens > 0 and e.reasoning_tokens > 0 for e in log)
    assert log[0].model == "gpt-4o-mini" and first.response_metadata["model_name"] == "gpt-4o-mini"
    assert log[2].prompt_tokens > log[0].prompt_tokens


def test_async_and_streaming_calls_report_usage_like_openai(provider: StandInProvider) -> None:
    async def both() -> tuple[Any, Any]:
        reply = await allm(provider).ainvoke("async question")
        chunks = [c async for c in allm(provider).astream("async stream")]
        return reply, chunks

    reply, achunks = asyncio.run(both())
    chunks = list(llm(provider).stream("a streamed question"))
    # with stream_options.include_usage the usage arrives once, on the last chunk
    assert sum(1 for c in chunks if c.usage_metadata) == 1
    streamed = chunks[0]
    for c in chunks[1:]:
        streamed = streamed + c
    astreamed = achunks[0]
    for c in achunks[1:]:
        astreamed = astreamed + c
    log = provider.requests()
    assert [e.stream for e in log] == [False, True, True]
    assert [booked(reply), booked(astreamed), booked(streamed)] == [served(e) for e in log]
    assert streamed.content.startswith("Stand-in answer")


def test_a_streaming_call_without_include_usage_gets_no_usage(provider: StandInProvider) -> None:
    chunks = list(llm(provider, stream_usage=False).stream("no usage please"))
    assert not any(c.usage_metadata for c in chunks)
    assert provider.requests()[0].completion_tokens > 0  # the provider still logs what it served


def test_a_react_agent_calls_the_tool_then_answers(provider: StandInProvider) -> None:
    agent = create_react_agent(llm(provider), [lookup])
    out = agent.invoke({"messages": [("user", "capital of France")]})
    kinds = [type(m).__name__ for m in out["messages"]]
    assert kinds == ["HumanMessage", "AIMessage", "ToolMessage", "AIMessage"]
    assert out["messages"][2].content == "a fact about capital of France"
    assert "a fact about capital of France" in out["messages"][-1].content
    assert [e.tool_call for e in provider.requests()] == ["lookup", None]


def test_tool_mode_always_makes_an_agent_that_never_stops(provider: StandInProvider) -> None:
    provider.configure(tool_mode_by_model={"looping-model": "always"})
    try:
        agent = create_react_agent(llm(provider, model="looping-model"), [lookup])
        with pytest.raises(GraphRecursionError):
            agent.invoke({"messages": [("user", "loop")]}, {"recursion_limit": 9})
        assert len(provider.requests()) == 5 and all(e.tool_call == "lookup" for e in provider.requests())
        provider.reset()
        # other models keep the default script
        create_react_agent(llm(provider), [lookup]).invoke({"messages": [("user", "stop")]})
        assert [e.tool_call for e in provider.requests()] == ["lookup", None]
    finally:
        provider.configure(tool_mode_by_model={})


def _post(provider: StandInProvider, body: dict[str, Any]) -> tuple[int, dict[str, str], dict[str, Any]]:
    request = urllib.request.Request(
        f"{provider.base_url}/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, dict(r.headers), json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), json.loads(err.read())


def test_requests_per_minute_is_enforced_with_429_and_retry_after(provider: StandInProvider) -> None:
    provider.configure(requests_per_minute=3, window_s=60.0)
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    answers = [_post(provider, body) for _ in range(5)]
    assert [a[0] for a in answers] == [200, 200, 200, 429, 429]
    status, headers, error = answers[3]
    assert int(headers["Retry-After"]) >= 1 and error["error"]["code"] == "rate_limit_exceeded"
    # the real client sees OpenAI's rate-limit error (no retries here, to see it at once)
    with pytest.raises(openai.RateLimitError):
        llm(provider, max_retries=0).invoke("hi")
    assert [e.status for e in provider.requests()].count(429) == 3
    provider.configure(retry_after=False)
    assert "Retry-After" not in _post(provider, body)[1]
    provider.configure(retry_after=True)


def test_max_in_flight_is_enforced_and_the_most_seen_at_once_is_reported(provider: StandInProvider) -> None:
    provider.configure(max_in_flight=2, latency_s=0.3)
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "at once"}]}
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(_post(provider, body)[0])) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(set(results)) <= [200, 429] and 200 in results
    assert provider.max_in_flight_seen <= 2
    served_ok = [e for e in provider.requests() if e.status == 200]
    assert all(e.in_flight <= 2 for e in served_ok) and len(served_ok) == results.count(200)


def test_a_stand_in_in_a_child_process_serves_and_logs_over_http() -> None:
    with StandInProvider(in_process=False, latency_s=0.01) as p:
        reply = llm(p).invoke("from a child process")
        log = p.requests()
        assert len(log) == 1 and served(log[0]) == booked(reply)
        p.configure(requests_per_minute=0)
        with pytest.raises(openai.RateLimitError):
            llm(p, max_retries=0).invoke("refused")
        assert p.stats()["served"] == 2
    assert p._process is None


# ─── prices ───


def test_prices_must_be_non_negative_numbers_and_errors_name_the_field() -> None:
    for bad, problem in [
        (-1, "greater than or equal"),
        ("cheap", "valid number"),
        (float("inf"), "finite"),
        (True, "valid number"),
    ]:
        with pytest.raises(ConfigError) as info:
            PriceTable.load({"my-model": {"input": bad, "output": 1.0}})
        assert info.value.field == "prices['my-model'].input" and problem in str(info.value)
    with pytest.raises(ConfigError, match="output: is required"):
        PriceTable.load({"my-model": {"input": 1.0}})
    with pytest.raises(ConfigError) as info:
        ModelPrice(input=1, output=2, cached_input=-0.5)
    assert info.value.field == "price.cached_input"


def test_an_unknown_or_unreadable_price_file_is_a_typed_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        PriceTable.load(tmp_path / "missing.yaml", field="prices_file")
    assert info.value.field == "prices_file" and "does not exist" in str(info.value)
    broken = tmp_path / "broken.yaml"
    broken.write_text("prices: {a: [\n")
    with pytest.raises(ConfigError, match="does not parse"):
        PriceTable.load(broken)


def test_dated_and_prefixed_model_names_find_their_price() -> None:
    table = PriceTable.shipped()
    assert table.as_of and len(table) >= 20
    cases = {
        "gpt-4o-2024-08-06": "gpt-4o",
        "gpt-4o-mini-2024-07-18": "gpt-4o-mini",
        "openai:gpt-4.1-mini": "gpt-4.1-mini",
        "claude-3-5-sonnet-20241022": "claude-3-5-sonnet",
        "anthropic.claude-3-5-sonnet-20241022-v2:0": "claude-3-5-sonnet",
        "claude-sonnet-4-5-20250929": "claude-sonnet-4-5",
        "models/gemini-2.5-flash": "gemini-2.5-flash",
        "mistral-large-latest": "mistral-large",
        "o3-mini-2025-01-31": "o3-mini",
        "GPT-4o": "gpt-4o",
    }
    assert {m: table.resolve(m) for m in cases} == cases
    assert table.price("gpt-4o-2024-08-06") == table.price("gpt-4o")
    assert table.resolve("stand-in-model") is None and "stand-in-model" not in table


def test_cost_of_usage_prices_cached_input_and_never_prices_an_unknown_model_as_zero() -> None:
    table = PriceTable.load({"my-model": {"input": 1.0, "output": 2.0, "cached_input": 0.5}})
    usage = {
        "my-model": {"input": 1_000_000, "output": 500_000, "cache_read": 400_000, "reasoning": 100, "calls": 3},
        "mystery-model": {"input": 10, "output": 10, "cache_read": 0, "reasoning": 0, "calls": 1},
    }
    warned: set[str] = set()
    with pytest.warns(UnpricedModelWarning, match="mystery-model"):
        cost = table.cost(usage, warned=warned)
    assert cost.cost_usd == pytest.approx(0.6 * 1.0 + 0.4 * 0.5 + 0.5 * 2.0)
    assert cost.by_model["mystery-model"] is None and cost.unpriced == ("mystery-model",) and not cost.priced
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per batch: the same set means no second warning
        table.cost(usage, warned=warned)
    # a model without a cache discount bills cached tokens as input
    plain = ModelPrice(input=2.0, output=0.0)
    assert plain.cost({"input": 1_000_000, "cache_read": 1_000_000}) == pytest.approx(2.0)


def test_project_prices_override_the_shipped_table_from_python_and_yaml(tmp_path: Path) -> None:
    shipped = PriceTable.shipped()
    table = PriceTable.load({"gpt-4o": {"input": 1.0, "output": 1.0}})
    assert table.price("gpt-4o-2024-08-06") == ModelPrice(input=1.0, output=1.0)
    assert table.price("gpt-4o-mini") == shipped.price("gpt-4o-mini")
    path = tmp_path / "prices.yaml"
    path.write_text(
        "as_of: '2026-01-01'\nprices:\n  house-model: {input: 0.1, output: 0.2}\naliases:\n  house: house-model\n"
    )
    from_file = PriceTable.load(str(path))
    assert from_file.price("house").input == 0.1 and from_file.as_of == "2026-01-01"
    assert from_file.price("claude-3-haiku") == shipped.price("claude-3-haiku")


# ─── capture in a node body ───


class _S(TypedDict):
    q: str
    a: Annotated[list[str], lambda x, y: x + y]


def _subgraph(provider: StandInProvider) -> Any:
    """A graph whose two parallel nodes call the model (LangGraph runs them on its threads) and one streams."""

    def left(s: _S) -> dict[str, Any]:
        return {"a": [llm(provider).invoke(f"left {s['q']}").content]}

    def right(s: _S) -> dict[str, Any]:
        return {"a": [llm(provider, model="gpt-4.1-nano").invoke(f"right {s['q']}").content]}

    def streamer(s: _S) -> dict[str, Any]:
        return {"a": ["".join(str(c.content) for c in llm(provider).stream(f"stream {s['q']}"))]}

    g = StateGraph(_S)
    g.add_node("left", left)
    g.add_node("right", right)
    g.add_node("streamer", streamer)
    g.add_edge(START, "left")
    g.add_edge(START, "right")
    g.add_edge(["left", "right"], "streamer")
    g.add_edge("streamer", END)
    return g.compile()


def test_capture_books_every_call_per_model_as_the_provider_logged_it(provider: StandInProvider) -> None:
    graph = _subgraph(provider)
    agent = create_react_agent(llm(provider), [lookup])

    async def async_part() -> None:
        await allm(provider).ainvoke("async call")
        async for _ in allm(provider, model="gpt-4.1-nano").astream("async stream"):
            pass

    llm(provider).invoke("before the capture")  # outside: not booked
    provider.reset()
    with capturing_usage() as usage:
        llm(provider).invoke("sync call")
        asyncio.run(async_part())
        graph.invoke({"q": "nested", "a": []})
        agent.invoke({"messages": [("user", "agent question")]})
        llm(provider).batch(["batched one", "batched two"])  # LangChain's own thread pool
    llm(provider).invoke("after the capture")  # outside: not booked
    log = provider.requests()[:-1]
    assert len(log) == 10
    assert usage == _usage_of(log)
    assert usage["gpt-4.1-nano"]["calls"] == 2 and usage["gpt-4o-mini"]["calls"] == 8


def _usage_of(entries: list[Any]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for e in entries:
        row = out.setdefault(e.model, {"input": 0, "output": 0, "cache_read": 0, "reasoning": 0, "calls": 0})
        row["input"] += e.prompt_tokens
        row["output"] += e.completion_tokens
        row["cache_read"] += e.cached_tokens
        row["reasoning"] += e.reasoning_tokens
        row["calls"] += 1
    return out


def test_concurrent_captures_in_threads_each_book_only_their_own_calls(provider: StandInProvider) -> None:
    """Node bodies on an I/O lane's threads: each body's capture sees only its calls."""
    provider.configure(latency_s=0.05)
    results: dict[str, dict[str, dict[str, int]]] = {}

    def body(name: str, model: str, calls: int) -> None:
        with capturing_usage() as usage:
            for i in range(calls):
                llm(provider, model=model).invoke(f"{name} {i}")
        results[name] = usage

    threads = [
        threading.Thread(target=body, args=(f"n{i}", m, c))
        for i, (m, c) in enumerate([("gpt-4o", 3), ("o3-mini", 2), ("gpt-4o", 1)])
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log = provider.requests()
    for name in results:
        mine = [e for e in log if e.prompt.startswith(name + " ")]
        assert results[name] == _usage_of(mine)
    assert [results[n][m]["calls"] for n, m in [("n0", "gpt-4o"), ("n1", "o3-mini"), ("n2", "gpt-4o")]] == [3, 2, 1]


def test_a_failing_body_keeps_what_it_booked_before_failing(provider: StandInProvider) -> None:
    sink: dict[str, dict[str, int]] = {}
    with pytest.raises(RuntimeError), capturing_usage(sink):
        llm(provider).invoke("paid for")
        raise RuntimeError("the node failed after its call")
    assert sink == provider.usage_by_model()
