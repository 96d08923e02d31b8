"""Tokens a node run spent on chat models, captured with no code in the node.

:func:`capturing_usage` wraps a node body; every LangChain chat-model call
made inside it is booked per model::

    with capturing_usage() as usage:
        body(state)
    usage  # {"gpt-4o-mini": {"input": 120, "output": 30, "cache_read": 0, "reasoning": 0, "calls": 2}}

It reads LangChain's own usage records (``AIMessage.usage_metadata``, the
same source as ``langchain_core.callbacks.get_usage_metadata_callback``)
through a callback handler that LangChain's configure hook adds to every
run started in this context. So it sees sync, async and streaming calls
(streaming needs the provider to report usage, e.g.
``ChatOpenAI(stream_usage=True)``), calls nested in chains, subgraphs and
agents, and calls on threads LangChain or LangGraph start (they copy the
context). A thread the node starts itself without copying the context is
not seen.

Unlike ``get_usage_metadata_callback``, which registers a new context
variable and hook on every use (the hook list grows by one per call, and
every later LangChain run scans it), the hook here is registered once per
process and each capture only sets the variable.

This module runs inside Ray workers: it imports ``langchain_core`` only once
something else has (a body that calls a chat model has imported it when its
module was loaded). A body that imports LangChain for the first time inside
its own run is captured from its next run on.
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["USAGE_KINDS", "add_usage", "capturing_usage", "empty_usage"]

USAGE_KINDS = ("input", "output", "cache_read", "reasoning", "calls")
"""The counts booked per model: input tokens (cached ones included), output tokens (reasoning included),
cached input tokens, reasoning tokens, and the number of calls."""

UNKNOWN_MODEL = "unknown"
"""The model name booked when neither the response nor the call names one."""

_active: contextvars.ContextVar[Any] = contextvars.ContextVar("wtb_node_usage", default=None)
_hook_lock = threading.Lock()
_handler_class: type | None = None


def empty_usage() -> dict[str, int]:
    """A zero count of every kind in :data:`USAGE_KINDS`."""
    return dict.fromkeys(USAGE_KINDS, 0)


def add_usage(into: dict[str, dict[str, int]], other: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """Add per-model counts ``other`` into ``into`` (in place) and return ``into``."""
    for model, counts in other.items():
        row = into.setdefault(model, empty_usage())
        for kind, n in counts.items():
            row[kind] = row.get(kind, 0) + int(n)
    return into


def _make_handler_class() -> type:
    from langchain_core.callbacks import BaseCallbackHandler

    class NodeUsageHandler(BaseCallbackHandler):
        """Books ``usage_metadata`` of each chat-model call into a per-model dict."""

        run_inline = True  # booking is a few additions: no executor hop for async runs

        # Only model calls matter: LangChain then skips this handler for every other event
        # (a LangGraph body starts a chain run per node and per step).
        ignore_chain = property(lambda self: True)
        ignore_agent = property(lambda self: True)
        ignore_retriever = property(lambda self: True)
        ignore_retry = property(lambda self: True)
        ignore_custom_event = property(lambda self: True)

        def __init__(self, sink: dict[str, dict[str, int]]) -> None:
            super().__init__()
            self.sink = sink
            self._lock = threading.Lock()
            self._models: dict[Any, str] = {}

        def _start(self, run_id: Any, kwargs: dict[str, Any]) -> None:
            params = kwargs.get("invocation_params") or {}
            metadata = kwargs.get("metadata") or {}
            model = params.get("model") or params.get("model_name") or metadata.get("ls_model_name")
            if model:
                with self._lock:
                    self._models[run_id] = str(model)

        def on_chat_model_start(self, serialized: Any, messages: Any, *, run_id: Any, **kwargs: Any) -> None:
            self._start(run_id, kwargs)

        def on_llm_start(self, serialized: Any, prompts: Any, *, run_id: Any, **kwargs: Any) -> None:
            self._start(run_id, kwargs)

        def on_llm_error(self, error: BaseException, *, run_id: Any, **kwargs: Any) -> None:
            with self._lock:
                self._models.pop(run_id, None)

        def on_llm_end(self, response: Any, *, run_id: Any = None, **kwargs: Any) -> None:
            with self._lock:
                asked = self._models.pop(run_id, None)
            try:
                message = response.generations[0][0].message
            except (IndexError, AttributeError):
                return
            usage = getattr(message, "usage_metadata", None)
            if not usage:
                return
            model = (getattr(message, "response_metadata", None) or {}).get("model_name") or asked or UNKNOWN_MODEL
            inputs = usage.get("input_token_details") or {}
            outputs = usage.get("output_token_details") or {}
            with self._lock:
                row = self.sink.setdefault(str(model), empty_usage())
                row["input"] += int(usage.get("input_tokens") or 0)
                row["output"] += int(usage.get("output_tokens") or 0)
                row["cache_read"] += int(inputs.get("cache_read") or 0)
                row["reasoning"] += int(outputs.get("reasoning") or 0)
                row["calls"] += 1

    return NodeUsageHandler


def _hooked_handler_class() -> type | None:
    """The handler class, with LangChain's configure hook registered (once), if LangChain is loaded."""
    global _handler_class
    if _handler_class is not None:
        return _handler_class
    if "langchain_core" not in sys.modules:
        return None
    with _hook_lock:
        if _handler_class is None:
            from langchain_core.tracers.context import register_configure_hook

            cls = _make_handler_class()
            register_configure_hook(_active, inheritable=True)
            _handler_class = cls
    return _handler_class


@contextlib.contextmanager
def capturing_usage(sink: dict[str, dict[str, int]] | None = None) -> Iterator[dict[str, dict[str, int]]]:
    """Book every chat-model call made in this context into ``sink``: ``{model: {kind: count}}``.

    Counts are added in place, so a caller may read ``sink`` after the body
    raised (the calls it made before failing were paid for).
    """
    sink = {} if sink is None else sink
    cls = _hooked_handler_class()
    token = _active.set(cls(sink) if cls is not None else None)
    try:
        yield sink
    finally:
        _active.reset(token)
        if cls is None:
            _hooked_handler_class()  # LangChain was imported inside the body: hook it for the next runs
