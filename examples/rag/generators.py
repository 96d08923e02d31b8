"""Generator nodes: build the answer from the retrieved text (no language model).

``extractive_generator`` selects the sentences of the top passages that best
cover the query; ``lead_generator`` is the naive baseline that answers with
the opening sentences of the first passage. Both write the answer, with its
sources, to a JSON file in the project's outputs folder.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from .corpus import sentences
from .outputs import write_output
from .scoring import query_terms, weighted_coverage

if TYPE_CHECKING:
    from langchain_core.runnables import RunnableConfig

__all__ = ["ANSWER_SENTENCES", "CONTEXT_PASSAGES", "extractive_generator", "lead_generator", "select_sentences"]

CONTEXT_PASSAGES = 3
"""How many of the best passages the generators read."""

ANSWER_SENTENCES = 2
"""How many sentences an answer has."""


def select_sentences(query: str, passages: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """The answer sentences for ``query`` and the ids of the passages they come from."""
    terms = query_terms(query)
    candidates = []
    seen: set[str] = set()
    for rank, passage in enumerate(passages[:CONTEXT_PASSAGES]):
        for position, sentence in enumerate(sentences(passage["text"])):
            if sentence in seen:  # topics repeat paragraphs of other topics
                continue
            seen.add(sentence)
            length_penalty = 0.1 * min(1.0, len(sentence) / 600)
            score = weighted_coverage(terms, sentence) + 0.15 / (1 + rank) - length_penalty
            candidates.append((score, rank, position, sentence, passage["id"]))
    candidates.sort(key=lambda c: (-c[0], c[1], c[2]))
    chosen = candidates[:ANSWER_SENTENCES]
    return [c[3] for c in chosen], list(dict.fromkeys(c[4] for c in chosen))


def _record(
    state: dict[str, Any], config: RunnableConfig | None, generator: str, answer: str, sources: list[str]
) -> dict[str, Any]:
    thread = ((config or {}).get("configurable") or {}).get("thread_id")
    name = thread or f"{generator}-{hashlib.sha1(state['query'].encode()).hexdigest()[:12]}"
    path = write_output(name, {"query": state["query"], "answer": answer, "sources": sources, "generator": generator})
    return {"answer": answer, "sources": sources, "output_file": str(path)}


def extractive_generator(state: dict[str, Any], config: RunnableConfig = None) -> dict[str, Any]:  # type: ignore[assignment]
    """Answer with the sentences of the top passages that cover the query best."""
    chosen, sources = select_sentences(state["query"], state.get("passages", []))
    answer = " ".join(chosen) if chosen else "I could not find an answer."
    return _record(state, config, "extractive", answer, sources)


def lead_generator(state: dict[str, Any], config: RunnableConfig = None) -> dict[str, Any]:  # type: ignore[assignment]
    """Answer with the first sentences of the best passage (the naive baseline)."""
    passages = state.get("passages", [])
    chosen = sentences(passages[0]["text"])[:ANSWER_SENTENCES] if passages else []
    answer = " ".join(chosen) if chosen else "I could not find an answer."
    return _record(state, config, "lead", answer, [passages[0]["id"]] if chosen else [])
