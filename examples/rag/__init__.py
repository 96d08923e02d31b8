"""A retrieval QA pipeline over Python's help topics, A/B-tested with wtb_prefect.

The node modules (``corpus``, ``indexes``, ``retrievers``, ``reranker``,
``generators``, ``evaluators``) import only the standard library at module
level, so they run in the minimal uv environment of their variant; the
project (``project.py``, ``wtb_project.yaml``) wires them together.
"""
