"""The retrieval QA graphs: retriever -> generator, and retriever -> reranker -> generator."""

from __future__ import annotations

from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from .generators import extractive_generator
from .reranker import reranker
from .retrievers import bm25_retriever

__all__ = ["RAGState", "create_rag_graph", "create_rag_with_reranker"]


class RAGState(TypedDict, total=False):
    """The state of the QA graph.

    A TypedDict, so node bodies receive a plain dict: a node running in an
    isolated environment needs neither pydantic nor this module to read it.
    """

    query: str
    passages: list[dict[str, Any]]
    answer: str
    sources: list[str]
    output_file: str


def create_rag_graph() -> CompiledStateGraph:
    """retriever (BM25) -> generator (extractive)."""
    graph = StateGraph(RAGState)
    graph.add_node("retriever", bm25_retriever)
    graph.add_node("generator", extractive_generator)
    graph.add_edge(START, "retriever")
    graph.add_edge("retriever", "generator")
    graph.add_edge("generator", END)
    return graph.compile()


def create_rag_with_reranker() -> CompiledStateGraph:
    """retriever (BM25) -> reranker -> generator (extractive)."""
    graph = StateGraph(RAGState)
    graph.add_node("retriever", bm25_retriever)
    graph.add_node("reranker", reranker)
    graph.add_node("generator", extractive_generator)
    graph.add_edge(START, "retriever")
    graph.add_edge("retriever", "reranker")
    graph.add_edge("reranker", "generator")
    graph.add_edge("generator", END)
    return graph.compile()
