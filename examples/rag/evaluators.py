"""Evaluators: ``fn(final_state, test_case) -> float``, registered on the project.

Retrieval is scored on topic ids (a passage is relevant when its topic is one
of the case's relevant topics), the answer on the expected keywords.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .corpus import normalize

__all__ = ["EVALUATORS", "answer_match", "hit_at_1", "hit_at_5", "mrr"]

MRR_DEPTH = 10


def _ranked_topics(final_state: Mapping[str, Any]) -> list[str]:
    return [p["topic"] for p in final_state.get("passages", [])]


def _relevant(case: Mapping[str, Any]) -> set[str]:
    return set(case["expected"]["topics"])


def _hit_at(k: int, final_state: Mapping[str, Any], case: Mapping[str, Any]) -> float:
    return float(bool(_relevant(case) & set(_ranked_topics(final_state)[:k])))


def hit_at_1(final_state: Mapping[str, Any], case: Mapping[str, Any]) -> float:
    """1.0 when the first passage comes from a relevant topic."""
    return _hit_at(1, final_state, case)


def hit_at_5(final_state: Mapping[str, Any], case: Mapping[str, Any]) -> float:
    """1.0 when one of the first five passages comes from a relevant topic."""
    return _hit_at(5, final_state, case)


def mrr(final_state: Mapping[str, Any], case: Mapping[str, Any]) -> float:
    """Reciprocal rank of the first relevant passage within the first ten (0 if none)."""
    relevant = _relevant(case)
    for rank, topic in enumerate(_ranked_topics(final_state)[:MRR_DEPTH], start=1):
        if topic in relevant:
            return 1.0 / rank
    return 0.0


def answer_match(final_state: Mapping[str, Any], case: Mapping[str, Any]) -> float:
    """Share of the expected keywords found in the answer (case-insensitive)."""
    keywords = case["expected"]["keywords"]
    answer = normalize(final_state.get("answer", "")).lower()
    return sum(normalize(k).lower() in answer for k in keywords) / len(keywords)


EVALUATORS = {"hit_at_1": hit_at_1, "hit_at_5": hit_at_5, "mrr": mrr, "answer_match": answer_match}
"""The evaluators by the name they are registered (and logged to MLflow) under."""
