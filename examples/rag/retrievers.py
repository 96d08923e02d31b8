"""Retriever nodes: BM25 (rank-bm25), TF-IDF (scikit-learn) and a hybrid of both.

Each returns the ``CANDIDATES`` best passages, best first, as
``{"passages": [{"id", "topic", "heading", "text", "score"}, ...]}``.
"""

from __future__ import annotations

from typing import Any

from .corpus import load_passages, tokenize
from .indexes import CHUNK_CHARS, bm25_index, tfidf_index
from .timing import compute_time

__all__ = ["CANDIDATES", "bm25_retriever", "hybrid_retriever", "rank_bm25_scores", "tfidf_retriever"]

CANDIDATES = 20
"""Passages every retriever returns (the reranker reorders them; evaluators read the top 10)."""

_RRF_K = 60


def _top(scores: Any, k: int) -> list[dict[str, Any]]:
    passages = load_passages(CHUNK_CHARS)
    order = sorted(range(len(passages)), key=lambda i: (-float(scores[i]), i))[:k]
    return [{**passages[i].as_dict(), "score": round(float(scores[i]), 6)} for i in order]


def rank_bm25_scores(query: str) -> Any:
    """BM25 score of every passage for ``query``."""
    return bm25_index().get_scores(tokenize(query))


def _tfidf_scores(query: str) -> Any:
    vectorizer, matrix = tfidf_index()
    return (matrix @ vectorizer.transform([query]).T).toarray().ravel()


def bm25_retriever(state: dict[str, Any]) -> dict[str, Any]:
    """Okapi BM25 over stemmed content words (rank-bm25)."""
    with compute_time():
        return {"passages": _top(rank_bm25_scores(state["query"]), CANDIDATES)}


def tfidf_retriever(state: dict[str, Any]) -> dict[str, Any]:
    """Cosine similarity of TF-IDF vectors of word unigrams and bigrams (scikit-learn)."""
    with compute_time():
        return {"passages": _top(_tfidf_scores(state["query"]), CANDIDATES)}


def hybrid_retriever(state: dict[str, Any]) -> dict[str, Any]:
    """Reciprocal rank fusion of the BM25 and TF-IDF rankings."""
    query = state["query"]
    with compute_time():
        fused = [0.0] * len(load_passages(CHUNK_CHARS))
        for scores in (rank_bm25_scores(query), _tfidf_scores(query)):
            order = sorted(range(len(fused)), key=lambda i: (-float(scores[i]), i))[:100]
            for rank, index in enumerate(order):
                fused[index] += 1.0 / (_RRF_K + rank + 1)
        return {"passages": _top(fused, CANDIDATES)}
