"""The retrieval QA example: a WorkflowProject A/B-testing retrievers, a reranker and generators.

``build_project()`` returns the project; ``VARIANT_MATRIX`` and ``TEST_CASES``
are what ``wtb demo`` (``make demo``) runs. The same project
is described by ``wtb_project.yaml`` next to this file.

Variant combinations of ``VARIANT_MATRIX`` (each retriever runs in its own uv
environment; the reranker in one with scikit-learn):

- default: BM25 retriever (rank-bm25) -> extractive generator
- ``retriever=tfidf``: TF-IDF retriever (scikit-learn)
- ``retriever=hybrid``: BM25 + TF-IDF by reciprocal rank fusion (both)
- ``generator=lead``: baseline generator, first sentences of the top passage
- ``_workflow=with_reranker``: BM25 -> reranker (LSA + term features) -> extractive
"""

from __future__ import annotations

from pathlib import Path

from wtb_prefect import (
    EnvironmentConfig,
    EnvSpec,
    ExecutionConfig,
    FileTrackingConfig,
    NodeResourceConfig,
    RayConfig,
    WorkflowProject,
)

from .cases import build_test_cases
from .evaluators import EVALUATORS
from .generators import lead_generator
from .retrievers import hybrid_retriever, tfidf_retriever
from .workflow import RAGState, create_rag_graph, create_rag_with_reranker

__all__ = ["ENVIRONMENTS", "PROJECT_ROOT", "SUMMARY_METRICS", "TEST_CASES", "VARIANT_MATRIX", "build_project"]

PROJECT_ROOT = Path(__file__).resolve().parent
"""The project root: tracked paths (``outputs/``) are relative to it."""

BM25 = "rank-bm25>=0.2"
SKLEARN = "scikit-learn>=1.3"

ENVIRONMENTS = EnvironmentConfig(
    granularity="variant",
    node_environments={
        "retriever": EnvSpec(dependencies=[BM25]),  # the default retriever is BM25
        "reranker": EnvSpec(dependencies=[SKLEARN]),
    },
    variant_environments={
        "retriever:tfidf": EnvSpec(dependencies=[SKLEARN]),
        "retriever:hybrid": EnvSpec(dependencies=[BM25, SKLEARN]),
    },
)
"""One uv environment per retriever implementation and one for the reranker; the
generators need only the standard library and run in the driver's environment."""

EXECUTION = ExecutionConfig(
    batch_executor="ray",
    ray_config=RayConfig(max_concurrent_workflows=2, max_retries=1),
    default_node_resources=NodeResourceConfig(num_cpus=0.25, memory="256MB"),
    node_resources={
        "retriever": NodeResourceConfig(num_cpus=0.5, memory="512MB"),
        "reranker": NodeResourceConfig(num_cpus=1, memory="768MB"),
        "generator": NodeResourceConfig(num_cpus=0.25, memory="256MB"),
    },
    default_timeout=180,
)
"""Per-node Ray resources (all fit a 2-CPU machine): the reranker, which builds an
SVD of the corpus, takes a whole CPU; retrievers half; generators a quarter.

Two executions at once: the nodes compute rather than wait, and every further
concurrent execution costs a Ray worker process per environment (5 here), each
importing its libraries, so on a small machine more executions at once make the
demo slower, not faster. On a bigger machine raise it, or pass ``wtb demo --parallelism``."""

FILE_TRACKING = FileTrackingConfig(enabled=True, tracked_paths=["outputs/"], commit_on="checkpoint")
"""The generators write their answers to ``outputs/`` (see ``outputs.outputs_dir``)."""


def build_project() -> WorkflowProject:
    """The retrieval QA project with its node variants, workflow variant and evaluators."""
    project = WorkflowProject(
        name="rag_qa",
        description="Retrieval QA over Python's help topics (pydoc_data): retrievers, reranker, generators",
        graph_factory=create_rag_graph,
        state_schema=RAGState,
        file_tracking=FILE_TRACKING,
        environment=ENVIRONMENTS,
        execution=EXECUTION,
        root=PROJECT_ROOT,
    )
    project.register_workflow_variant(
        name="with_reranker",
        graph_factory=create_rag_with_reranker,
        description="BM25 candidates reordered by the reranker before generation",
    )
    project.register_variant(
        node="retriever",
        name="tfidf",
        implementation=tfidf_retriever,
        description="TF-IDF cosine over word unigrams and bigrams (scikit-learn)",
    )
    project.register_variant(
        node="retriever",
        name="hybrid",
        implementation=hybrid_retriever,
        description="Reciprocal rank fusion of BM25 and TF-IDF",
        resources=NodeResourceConfig(num_cpus=0.5, memory="768MB"),
    )
    project.register_variant(
        node="generator",
        name="lead",
        implementation=lead_generator,
        description="Baseline: the first sentences of the best passage",
    )
    for name, evaluator in EVALUATORS.items():
        project.register_evaluator(name, evaluator)
    return project


VARIANT_MATRIX: list[dict[str, str]] = [
    {},
    {"retriever": "tfidf"},
    {"retriever": "hybrid"},
    {"generator": "lead"},
    {"_workflow": "with_reranker"},
]
"""The comparison ``wtb demo`` runs: every retriever, the baseline generator, the reranker."""

TEST_CASES = build_test_cases()
"""50 questions with their relevant topics and answer keywords (see ``cases.py``)."""

SUMMARY_METRICS = ["total.compute_ms"]
"""Extra column of ``wtb demo``'s table: the retriever's and reranker's own compute time
per question (``timing.compute_time``), apart from dispatch."""
