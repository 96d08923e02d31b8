"""The one use of LangGraph's private modules (see :mod:`wtb_prefect.private_api`).

LangGraph wraps every node in a ``RunnableCallable`` (``langgraph._internal``):
it tells a plain function node from other runnables, knows which of
``config``, ``writer``, ``store``... a function accepts, and is how a wrapped
node is built again. LangGraph exports no public name for it.
"""

from __future__ import annotations

from wtb_prefect.private_api import private_name

__all__ = ["RunnableCallable"]

RunnableCallable = private_name("langgraph", "langgraph._internal._runnable", "RunnableCallable")
"""LangGraph's node wrapper class (raises ``PrivateAPIChanged`` on import when a release moved it)."""
