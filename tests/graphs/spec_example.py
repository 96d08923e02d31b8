"""The specification's section 3.1 example, written with real functions.

Kept in an importable module so Ray workers can import the node functions.
"""

from __future__ import annotations

import re

from langgraph.graph import END, START, StateGraph
from pydantic import BaseModel
from rank_bm25 import BM25Okapi

CORPUS = [
    "LangGraph is a library for building stateful, multi-actor applications with LLMs as graphs.",
    "RAG, retrieval augmented generation, retrieves documents and then generates an answer from them.",
    "Vector search embeds text as vectors and finds the nearest neighbours of a query vector.",
    "Prefect orchestrates Python workflows as flows made of tasks with retries and a UI.",
    "Ray schedules tasks across a cluster, each with its own CPUs, GPUs and memory.",
    "BM25 ranks documents by term frequency and inverse document frequency of the query terms.",
]


def tokenize(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


_BM25 = BM25Okapi([tokenize(doc) for doc in CORPUS])


class RAGState(BaseModel):
    query: str
    documents: list[str] = []
    answer: str = ""


def retriever(state: RAGState) -> dict:
    """Default retriever: the two documents sharing most words with the query."""
    query = set(tokenize(state.query))
    ranked = sorted(CORPUS, key=lambda doc: (-len(query & set(tokenize(doc))), doc))
    return {"documents": ranked[:2]}


def generator(state: RAGState) -> dict:
    return {"answer": f"Answer based on {state.documents}"}


def bm25_retriever_func(state: RAGState) -> dict:
    """BM25-based sparse retriever (rank-bm25)."""
    scores = _BM25.get_scores(tokenize(state.query))
    order = sorted(range(len(CORPUS)), key=lambda i: (-scores[i], i))
    return {"documents": [CORPUS[i] for i in order[:2]]}


def hybrid_retriever_func(state: RAGState) -> dict:
    """Hybrid: BM25 score plus word overlap, normalised."""
    query = tokenize(state.query)
    bm25 = _BM25.get_scores(query)
    top = max(bm25) or 1.0
    overlap = [len(set(query) & set(tokenize(doc))) / (len(set(query)) or 1) for doc in CORPUS]
    scores = [b / top + o for b, o in zip(bm25, overlap)]
    order = sorted(range(len(CORPUS)), key=lambda i: (-scores[i], i))
    return {"documents": [CORPUS[i] for i in order[:3]]}


def gpt4_generator_func(state: RAGState) -> dict:
    """An extractive generator standing in for GPT-4: the first retrieved sentence."""
    return {"answer": state.documents[0].split(",")[0] if state.documents else "I don't know."}


def reranker_func(state: RAGState) -> dict:
    """Rerank by the share of the document's words that are query words."""
    query = set(tokenize(state.query))
    return {"documents": sorted(state.documents, key=lambda d: -len(query & set(tokenize(d))) / len(set(tokenize(d))))}


def create_rag_graph():
    graph = StateGraph(RAGState)
    graph.add_node("retriever", retriever)
    graph.add_node("generator", generator)
    graph.add_edge(START, "retriever")
    graph.add_edge("retriever", "generator")
    graph.add_edge("generator", END)
    return graph.compile()


def create_rag_with_reranker():
    """V2: Added reranker node"""
    graph = StateGraph(RAGState)
    graph.add_node("retriever", retriever)
    graph.add_node("reranker", reranker_func)
    graph.add_node("generator", generator)
    graph.add_edge(START, "retriever")
    graph.add_edge("retriever", "reranker")
    graph.add_edge("reranker", "generator")
    graph.add_edge("generator", END)
    return graph.compile()
