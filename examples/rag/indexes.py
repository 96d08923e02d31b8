"""Search indexes over the corpus, built once per process and cached.

Node bodies run in Ray workers many times; each worker builds an index the
first time it needs it and reuses it afterwards (the cache is keyed by the
corpus fingerprint, so another corpus or chunk size gets its own index).
The heavy imports (rank_bm25, scikit-learn) happen inside the builders, so a
node whose environment lacks one of them never imports it.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from .corpus import Passage, corpus_key, load_passages, tokenize

__all__ = ["CHUNK_CHARS", "bm25_index", "cached", "clear_cache", "idf_table", "lsa_index", "tfidf_index"]

CHUNK_CHARS = 800
"""Passage size of the example's corpus."""

_cache: dict[tuple[str, str], Any] = {}
_lock = threading.Lock()
builds: Counter[str] = Counter()
"""How many times each index kind was built in this process (for tests and logs)."""


def cached(kind: str, build: Callable[[tuple[Passage, ...]], Any], max_chars: int = CHUNK_CHARS) -> Any:
    """The ``kind`` index of the corpus, built by ``build(passages)`` on first use."""
    key = (corpus_key(max_chars), kind)
    index = _cache.get(key)
    if index is None:
        with _lock:
            index = _cache.get(key)
            if index is None:
                index = build(load_passages(max_chars))
                _cache[key] = index
                builds[kind] += 1
    return index


def clear_cache() -> None:
    """Forget every built index (tests use it to measure a cold build)."""
    with _lock:
        _cache.clear()


def _document(passage: Passage) -> str:
    return f"{passage.heading}\n{passage.text}"


def _build_bm25(passages: tuple[Passage, ...]) -> Any:
    from rank_bm25 import BM25Okapi

    return BM25Okapi([tokenize(_document(p)) for p in passages])


def bm25_index() -> Any:
    """A ``rank_bm25.BM25Okapi`` over stemmed content words of heading + text."""
    return cached("bm25", _build_bm25)


def _build_tfidf(passages: tuple[Passage, ...]) -> tuple[Any, Any]:
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(stop_words="english", ngram_range=(1, 2), sublinear_tf=True, min_df=1)
    matrix = vectorizer.fit_transform([_document(p) for p in passages])
    return vectorizer, matrix


def tfidf_index() -> tuple[Any, Any]:
    """A scikit-learn TF-IDF vectorizer (word unigrams + bigrams) and its L2-normalised matrix."""
    return cached("tfidf", _build_tfidf)


def _build_lsa(passages: tuple[Passage, ...]) -> tuple[Any, Any, Any]:
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import normalize

    vectorizer = TfidfVectorizer(stop_words="english", sublinear_tf=True)
    svd = TruncatedSVD(n_components=LSA_DIMENSIONS, random_state=0)
    vectors = normalize(svd.fit_transform(vectorizer.fit_transform([_document(p) for p in passages])))
    return vectorizer, svd, vectors


LSA_DIMENSIONS = 150


def lsa_index() -> tuple[Any, Any, Any]:
    """Latent semantic analysis: TF-IDF reduced to 150 dimensions by truncated SVD
    (scikit-learn), with the L2-normalised passage vectors. Relates words that
    occur in the same contexts, which exact term matching cannot."""
    return cached("lsa", _build_lsa)


def _build_idf(passages: tuple[Passage, ...]) -> dict[str, float]:
    df: Counter[str] = Counter()
    for passage in passages:
        df.update(set(tokenize(_document(passage))))
    n = len(passages)
    return {term: math.log(1 + (n - count + 0.5) / (count + 0.5)) for term, count in df.items()}


def idf_table() -> dict[str, float]:
    """Inverse document frequency of every stemmed term (pure Python, for scoring sentences)."""
    return cached("idf", _build_idf)
