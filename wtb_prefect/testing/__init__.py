"""Helpers for testing projects that call LLMs, without reaching an LLM API.

:class:`StandInProvider` is a STAND-IN OpenAI-compatible chat API served on
127.0.0.1: point a real client (``ChatOpenAI(base_url=provider.base_url)``)
at it and every call gets a deterministic answer, OpenAI-shaped ``usage``
and a line in the provider's request log. Nothing in the core of
``wtb_prefect`` imports this package.
"""

from __future__ import annotations

from wtb_prefect.testing.provider import ProviderSettings, ServedRequest, StandInProvider, count_tokens

__all__ = ["ProviderSettings", "ServedRequest", "StandInProvider", "count_tokens"]
