"""The reranker node: rescoring every retrieved passage against the query.

A different method from the first stage: each (query, passage) pair gets
features computed jointly — IDF-weighted coverage of the query terms in the
passage, in its best single sentence and in its heading — plus a semantic
similarity from latent semantic analysis (scikit-learn truncated SVD), which
also relates words the query and the passage do not share. Building the LSA
model is the heaviest step of the example (an SVD of the corpus, multi-threaded
BLAS), so the reranker asks for a whole CPU.
"""

from __future__ import annotations

from typing import Any

from .corpus import sentences
from .indexes import lsa_index
from .scoring import query_terms, weighted_coverage
from .timing import compute_time

__all__ = ["WEIGHTS", "features", "reranker"]

WEIGHTS = {"coverage": 0.4, "sentence": 0.1, "heading": 0.2, "semantic": 0.3}
"""How much each feature counts in the reranker's score."""


def features(query: str, passages: list[dict[str, Any]]) -> list[dict[str, float]]:
    """The reranker's features of each passage for ``query``."""
    from sklearn.preprocessing import normalize

    vectorizer, svd, _ = lsa_index()
    texts = [f"{p['heading']}\n{p['text']}" for p in passages]
    vectors = normalize(svd.transform(vectorizer.transform([query, *texts])))
    semantic = vectors[1:] @ vectors[0]
    terms = query_terms(query)
    return [
        {
            "coverage": weighted_coverage(terms, passage["text"]),
            "sentence": max((weighted_coverage(terms, s) for s in sentences(passage["text"])), default=0.0),
            "heading": weighted_coverage(terms, passage["heading"]),
            "semantic": float(similarity),
        }
        for passage, similarity in zip(passages, semantic)
    ]


def reranker(state: dict[str, Any]) -> dict[str, Any]:
    """Reorder the retrieved passages by the weighted sum of their :func:`features`."""
    passages = state.get("passages", [])
    if not passages:
        return {"passages": []}
    with compute_time():
        scored = [
            (sum(WEIGHTS[name] * value for name, value in feats.items()), rank, passage)
            for rank, (passage, feats) in enumerate(zip(passages, features(state["query"], passages)))
        ]
        scored.sort(key=lambda item: (-item[0], item[1]))
    return {"passages": [{**passage, "score": round(score, 6)} for score, _, passage in scored]}
