"""The retrieval QA example (examples/rag): its data, and a real batch through WTB whose
scores are checked against the evaluators run directly on the node functions."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import pytest

from examples.rag import indexes
from examples.rag.cases import build_test_cases
from examples.rag.corpus import load_passages, load_topics, normalize
from examples.rag.evaluators import EVALUATORS
from examples.rag.generators import extractive_generator, lead_generator
from examples.rag.project import PROJECT_ROOT, TEST_CASES, VARIANT_MATRIX, build_project
from examples.rag.reranker import reranker
from examples.rag.retrievers import CANDIDATES, bm25_retriever, hybrid_retriever, tfidf_retriever

# Cases on which the variants rank differently (so the comparison has something to show).
SUBSET = ["del-name", "booleans-false", "invert-operator", "call-instances", "await-where", "is-identity"]
SUBSET_MATRIX = [{}, {"retriever": "tfidf"}, {"_workflow": "with_reranker"}]
RETRIEVERS = {"default": bm25_retriever, "tfidf": tfidf_retriever, "hybrid": hybrid_retriever}


def _cases(ids: list[str]) -> list[dict[str, Any]]:
    by_id = {case["case_id"]: case for case in TEST_CASES}
    return [by_id[i] for i in ids]


def _independent(variant: dict[str, str], case: dict[str, Any]) -> tuple[dict[str, Any], dict[str, float]]:
    """The variant's final state and scores, computed by calling the node functions directly."""
    state: dict[str, Any] = {"query": case["query"]}
    state.update(RETRIEVERS[variant.get("retriever", "default")](state))
    if variant.get("_workflow") == "with_reranker":
        state.update(reranker(state))
    generator = lead_generator if variant.get("generator") == "lead" else extractive_generator
    state.update(generator(state, {"configurable": {"thread_id": f"independent-{case['case_id']}"}}))
    return state, {name: fn(state, case) for name, fn in EVALUATORS.items()}


# ─── The data, without services ───


def test_test_cases_are_real_questions_with_derivable_answers():
    cases = build_test_cases()
    assert len(cases) >= 40
    assert len({c["case_id"] for c in cases}) == len(cases)
    topics = load_topics()
    corpus = " ".join(normalize(t).lower() for t in topics.values())
    for case in cases:
        expected = case["expected"]
        assert expected["topics"], f"{case['case_id']}: its evidence is in no topic"
        assert set(expected["topics"]) <= set(topics)
        relevant = " ".join(normalize(topics[t]).lower() for t in expected["topics"])
        for keyword in expected["keywords"]:
            assert normalize(keyword).lower() in relevant, f"{case['case_id']}: {keyword!r} not in its topics"
        assert normalize(case["query"]).lower() not in corpus, f"{case['case_id']} copies the docs"
    assert len({t for c in cases for t in c["expected"]["topics"]}) >= 30  # spread over the corpus


def test_passages_cover_every_topic_and_indexes_are_built_once_per_process():
    passages = load_passages(indexes.CHUNK_CHARS)
    assert {p.topic for p in passages} == set(load_topics())
    assert len({p.id for p in passages}) == len(passages) > 500
    indexes.clear_cache()
    before = indexes.builds["bm25"]
    for case in TEST_CASES[:5]:
        assert len(bm25_retriever({"query": case["query"]})["passages"]) == CANDIDATES
    assert indexes.builds["bm25"] == before + 1


def test_evaluators_score_rankings_and_answers():
    case = {"expected": {"topics": ["for", "compound"], "keywords": ["exhausted", "else"]}}
    state = {
        "passages": [{"topic": "while"}, {"topic": "break"}, {"topic": "compound"}],
        "answer": "When the iterator is\nexhausted the loop ends.",
    }
    assert EVALUATORS["hit_at_1"](state, case) == 0.0
    assert EVALUATORS["hit_at_5"](state, case) == 1.0
    assert EVALUATORS["mrr"](state, case) == pytest.approx(1 / 3)
    assert EVALUATORS["answer_match"](state, case) == 0.5


def test_yaml_file_describes_the_same_project():
    from wtb_prefect import WorkflowProject

    from_yaml = WorkflowProject.from_yaml(PROJECT_ROOT / "wtb_project.yaml")
    built = build_project()
    assert from_yaml.name == built.name and from_yaml.description == built.description
    assert from_yaml.root == built.root == PROJECT_ROOT
    assert from_yaml.file_tracking == built.file_tracking
    assert from_yaml.environment == built.environment
    assert from_yaml.execution == built.execution
    assert from_yaml.evaluators == built.evaluators
    assert from_yaml.graph_factory is built.graph_factory
    assert from_yaml.list_workflow_variants() == built.list_workflow_variants()
    assert from_yaml.list_variants() == built.list_variants()
    for node, names in built.list_variants().items():
        for name in names:
            a, b = from_yaml.get_variant(node, name), built.get_variant(node, name)
            assert (a.implementation, a.resources, a.environment) == (b.implementation, b.resources, b.environment)


# ─── A real batch through WTB (Prefect server, Ray, uv environments) ───


def _check_against_independent(batch, matrix: list[dict[str, str]], cases: list[dict[str, Any]]) -> None:
    assert len(batch) == len(matrix) * len(cases)
    assert not batch.failed, [str(r.error) for r in batch.failed]
    for result in batch:
        case = next(c for c in cases if c["case_id"] == result.case_id)
        variant = {k: v for k, v in result.variant.items() if not (k == "_workflow" and v == "default")}
        state, scores = _independent(variant, case)
        assert {name: result.scores[name] for name in EVALUATORS} == scores, (result.variant_label, case["case_id"])
        final = result.final_state
        assert [p["id"] for p in final["passages"]] == [p["id"] for p in state["passages"]]
        assert final["answer"] == state["answer"] and final["sources"] == state["sources"]
        written = json.loads(Path(final["output_file"]).read_text())  # the node's file in the outputs folder
        assert written["answer"] == final["answer"] and written["query"] == case["query"]
        assert Path(final["output_file"]).parent.name == "outputs"


def test_batch_scores_are_the_evaluators_scores_and_variants_differ(bench):
    project = build_project()
    bench.register_project(project)
    cases = _cases(SUBSET)
    batch = bench.run_batch_test(project="rag_qa", variant_matrix=SUBSET_MATRIX, test_cases=cases, parallelism=6)
    _check_against_independent(batch, SUBSET_MATRIX, cases)

    means = {row["variant"]: row for row in batch.summary()}
    assert set(means) == {"default", "retriever=tfidf", "_workflow=with_reranker"}
    # The variants really differ: the reranker ranks the relevant topic higher than BM25
    # alone on these cases, and TF-IDF retrieves differently from BM25.
    assert means["_workflow=with_reranker"]["mrr"] > means["default"]["mrr"]
    assert means["_workflow=with_reranker"]["hit_at_5"] > means["default"]["hit_at_5"]
    assert (means["retriever=tfidf"]["hit_at_5"], means["retriever=tfidf"]["answer_match"]) != (
        means["default"]["hit_at_5"],
        means["default"]["answer_match"],
    )

    # Each node ran as a Prefect task on Ray with its own resources and environment.
    reranked = next(r for r in batch if r.variant_label == "_workflow=with_reranker")
    resources = {rec.node: rec.resources for rec in reranked.nodes}
    assert resources["reranker"]["num_cpus"] == 1 and resources["retriever"]["num_cpus"] == 0.5
    assert resources["generator"]["num_cpus"] == 0.25
    assert all(rec.task_run_id for r in batch for rec in r.nodes)
    envs = {r.variant_label: r.provenance["nodes"]["retriever"]["environment"] for r in batch}
    bm25_lock, tfidf_lock = " ".join(envs["default"]["lock"]), " ".join(envs["retriever=tfidf"]["lock"])
    assert "rank-bm25==" in bm25_lock and "scikit-learn==" not in bm25_lock
    assert "scikit-learn==" in tfidf_lock and "rank-bm25==" not in tfidf_lock
    assert reranked.provenance["nodes"]["generator"]["environment"] is None  # the driver's environment


def test_yaml_project_gives_the_same_results_as_the_python_project(bench):
    from wtb_prefect import WorkflowProject

    matrix = [{"retriever": "hybrid"}, {"generator": "lead"}]
    cases = _cases(SUBSET[:3])
    results = {}
    for source, project in [
        ("python", build_project()),
        ("yaml", WorkflowProject.from_yaml(PROJECT_ROOT / "wtb_project.yaml")),
    ]:
        bench.register_project(project)
        batch = bench.run_batch_test(project="rag_qa", variant_matrix=matrix, test_cases=cases, parallelism=6)
        _check_against_independent(batch, matrix, cases)
        results[source] = {
            (r.variant_label, r.case_id): (r.scores, r.final_state["answer"], r.final_state["passages"]) for r in batch
        }
    assert results["python"] == results["yaml"]


def test_full_matrix_is_a_real_comparison():
    """The demo's matrix: 4+ combinations over every case, with distinct quality per combination
    (computed directly; the batch above shows WTB gives the same numbers)."""
    assert len(VARIANT_MATRIX) >= 4 and len(TEST_CASES) >= 40
    means = {}
    for variant in VARIANT_MATRIX:
        scores = [_independent(variant, case)[1] for case in TEST_CASES]
        means[json.dumps(variant, sort_keys=True)] = {k: statistics.fmean(s[k] for s in scores) for k in EVALUATORS}
    assert len({tuple(m.values()) for m in means.values()}) == len(VARIANT_MATRIX)
    default, reranked = means["{}"], means[json.dumps({"_workflow": "with_reranker"})]
    assert reranked["mrr"] > default["mrr"] and reranked["hit_at_5"] > default["hit_at_5"]
    assert means[json.dumps({"generator": "lead"})]["answer_match"] < default["answer_match"]
