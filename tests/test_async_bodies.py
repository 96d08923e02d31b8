"""``async def`` node bodies run outside an I/O lane (a Ray task, the sequential and thread-pool
executors): one event loop per process, so a chat model built once at module level serves every
call, the caller's context (usage capture) reaches the body, and a timeout cancels it."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_openai import ChatOpenAI

from wtb_prefect.testing import StandInProvider
from wtb_prefect.worker.call import AsyncBody, NodeTimeout, call_observed


@pytest.fixture(scope="module")
def provider() -> Iterator[StandInProvider]:
    with StandInProvider() as p:
        yield p


def test_a_module_level_chat_model_serves_every_call_of_an_async_node(provider: StandInProvider) -> None:
    # as a user writes it: the client is built once, where the node is defined
    llm = ChatOpenAI(base_url=provider.base_url, api_key="stand-in", model="gpt-4o-mini")

    async def answer(state: dict) -> dict:
        reply = await llm.ainvoke(state["query"])
        return {"answer": reply.content}

    body = AsyncBody(answer)
    provider.reset()
    # a loop per call closed the client's connections with it: every second call failed
    answers = [body({"query": f"question {i}"})["answer"] for i in range(4)]
    assert all(a.startswith("Stand-in answer") for a in answers), answers
    assert [r.status for r in provider.requests()] == [200] * 4


def test_the_usage_of_an_async_body_is_booked_to_its_call(provider: StandInProvider) -> None:
    llm = ChatOpenAI(base_url=provider.base_url, api_key="stand-in", model="gpt-4o-mini")

    async def answer(state: dict) -> dict:
        return {"answer": (await llm.ainvoke(state["query"])).content}

    provider.reset()
    booked = [call_observed(AsyncBody(answer), ({"query": f"q{i}"},), {})[1]["usage"] for i in range(2)]
    served = provider.requests()
    for usage, request in zip(booked, served):
        assert usage["gpt-4o-mini"]["input"] == request.prompt_tokens
        assert usage["gpt-4o-mini"]["output"] == request.completion_tokens


def test_an_async_body_sees_the_callers_context_and_its_own_settings_stay_its_own() -> None:
    marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="unset")

    async def read_then_set(state: dict) -> dict:
        seen = marker.get()
        marker.set("set by the body")
        return {"seen": seen}

    marker.set("the caller's")
    assert AsyncBody(read_then_set)({})["seen"] == "the caller's"
    assert marker.get() == "the caller's"  # as with asyncio.run: the body ran in a copy


def test_a_timeout_cancels_the_running_coroutine() -> None:
    cancelled = threading.Event()

    async def hangs(state: dict) -> dict:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return {}

    with pytest.raises(NodeTimeout, match="timeout of 0.2s"):
        call_observed(AsyncBody(hangs), ({},), {}, timeout=0.2)
    assert cancelled.wait(10), "the coroutine kept running after its node timed out"


def test_an_async_body_that_runs_another_async_body_synchronously_does_not_deadlock() -> None:
    async def inner(state: dict) -> dict:
        await asyncio.sleep(0)
        return {"depth": state["depth"] + 1}

    def sync_helper(state: dict) -> Any:  # e.g. a tool or a subgraph called without await
        return AsyncBody(inner)(state)

    async def outer(state: dict) -> dict:
        return sync_helper({"depth": state["depth"] + 1})

    assert AsyncBody(outer)({"depth": 0}) == {"depth": 2}
