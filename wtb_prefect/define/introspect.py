"""Small helpers that look into LangGraph graphs and Python callables."""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable
from typing import Any

from langgraph.graph.state import CompiledStateGraph

from wtb_prefect.errors import GraphFactoryError


def build_graph(factory: Callable[[], Any], owner: str) -> CompiledStateGraph:
    """Call a graph factory and check that it returned a compiled StateGraph.

    Raises:
        GraphFactoryError: the factory is not callable, raised, or returned
            something other than a ``CompiledStateGraph``.
    """
    if not callable(factory):
        raise GraphFactoryError(
            f"{owner}: graph_factory must be a function returning a compiled graph, got {type(factory).__name__}"
        )
    try:
        graph = factory()
    except Exception as exc:
        raise GraphFactoryError(
            f"{owner}: graph_factory {callable_name(factory)} raised {type(exc).__name__}: {exc}"
        ) from exc
    if isinstance(graph, CompiledStateGraph):
        return graph
    hint = (
        "call .compile() on the StateGraph and return the result"
        if hasattr(graph, "compile") and hasattr(graph, "add_node")
        else "return the result of StateGraph(...).compile()"
    )
    raise GraphFactoryError(
        f"{owner}: graph_factory {callable_name(factory)} returned "
        f"{type(graph).__name__}, not a compiled LangGraph graph. Fix: {hint}"
    )


def node_names(graph: CompiledStateGraph) -> list[str]:
    """The user-defined node names of a compiled StateGraph, in definition order."""
    return [name for name in graph.builder.nodes if not name.startswith("__")]


def callable_name(fn: Any) -> str:
    """A readable dotted name of a callable, for messages and provenance."""
    module = getattr(fn, "__module__", None) or "?"
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
    return f"{module}.{name}"


def source_hash(fn: Any) -> str:
    """A short hash of a callable's source (or bytecode when source is unavailable).

    It names the exact implementation version a result came from.
    """
    target = inspect.unwrap(fn) if callable(fn) else fn
    try:
        payload = inspect.getsource(target).encode()
    except (OSError, TypeError):
        code = getattr(target, "__code__", None)
        payload = code.co_code if code is not None else repr(target).encode()
    return hashlib.sha256(payload).hexdigest()[:12]
