"""Query-term scoring shared by the reranker and the extractive generator."""

from __future__ import annotations

from .corpus import tokenize
from .indexes import idf_table

__all__ = ["query_terms", "weighted_coverage"]


def query_terms(query: str) -> dict[str, float]:
    """The distinct stemmed query terms with their IDF weight (unknown terms weigh 0)."""
    idf = idf_table()
    return {term: idf.get(term, 0.0) for term in dict.fromkeys(tokenize(query))}


def weighted_coverage(terms: dict[str, float], text: str) -> float:
    """IDF-weighted share of the query terms that occur in ``text`` (0..1)."""
    total = sum(terms.values())
    if not total:
        return 0.0
    present = set(tokenize(text))
    return sum(weight for term, weight in terms.items() if term in present) / total
