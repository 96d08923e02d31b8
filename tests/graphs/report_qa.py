"""The QA project of :mod:`scored_qa` with one more retriever, for the report tests.

``no_germany`` is right like the default retriever, except that it fails on
the German case: a batch of ``MATRIX`` has two unchanged cases (paris, rome),
two regressions (berlin, madrid) and one failure (berlin).
"""

from __future__ import annotations

from tests.graphs import scored_qa

MATRIX = [{}, {"retriever": "paris_rome"}, {"retriever": "no_germany"}]
CASES = scored_qa.CASES


def no_germany_retriever(state: scored_qa.QAState) -> dict:
    """The default retriever, but its index lacks Germany."""
    if "Germany" in state["question"]:
        raise ValueError("no document about Germany in the index")
    return scored_qa.country_retriever(state)


def report_project(name: str):
    """scored_qa's QA project plus the ``no_germany`` retriever."""
    project = scored_qa.qa_project(name)
    project.register_variant("retriever", "no_germany", no_germany_retriever)
    return project
