"""The LLM cost example runs end to end on the session's services and its figures add up."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from examples.llm_cost.project import run_example


def test_the_llm_cost_example_books_what_the_provider_served(bench: Any) -> None:
    outcome = run_example(bench, name=f"llm_cost_{uuid.uuid4().hex[:8]}")
    batch = outcome["batch"]
    assert not batch.failed
    booked: dict[str, int] = {}
    for result in batch.results:
        for record in result.nodes:
            for model, counts in (record.usage or {}).items():
                booked[model] = booked.get(model, 0) + counts["input"] + counts["output"]
    served = {m: c["input"] + c["output"] for m, c in outcome["provider_usage"].items()}
    assert booked == served
    cost = outcome["cost"]
    assert cost["saved_usd"] > 0  # both variants reuse the draft calls
    rows = {row["variant"]: row for row in batch.summary()}
    assert rows["review=large"]["usd_per_case"] > rows["default"]["usd_per_case"]
    assert outcome["estimate"].total_usd == pytest.approx(2 * cost["spent_usd"], rel=0.25)
