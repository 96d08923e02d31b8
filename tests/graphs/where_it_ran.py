"""A one-node project whose node reports where it ran: the Ray cluster, job, node and worker.

Importable by module reference, so ``wtb run tests.graphs.where_it_ran:build_project`` runs it.
"""

from __future__ import annotations

from typing_extensions import TypedDict


class WhereState(TypedDict, total=False):
    query: str
    gcs_address: str
    job_id: str
    node_id: str
    worker_pid: int


def where(state: WhereState) -> dict:
    """The Ray cluster (GCS address), job, node and worker process this node ran in."""
    import os

    import ray

    context = ray.get_runtime_context()
    return {
        "gcs_address": context.gcs_address,
        "job_id": context.get_job_id(),
        "node_id": context.get_node_id(),
        "worker_pid": os.getpid(),
    }


def where_graph():
    from langgraph.graph import END, START, StateGraph

    graph = StateGraph(WhereState)
    graph.add_node("where", where)
    graph.add_edge(START, "where")
    graph.add_edge("where", END)
    return graph.compile()


def build_project():
    from wtb_prefect import ExecutionConfig, NodeResourceConfig, WorkflowProject

    return WorkflowProject(
        name="where_it_ran",
        graph_factory=where_graph,
        execution=ExecutionConfig(default_node_resources=NodeResourceConfig(num_cpus=0.25, memory="64MB")),
    )


def echo(state: WhereState) -> dict:
    """Answer with the query (no Ray needed)."""
    return {"job_id": state.get("query", "")}


def build_threadpool_project():
    """Three nodes run by the threadpool executor (each has the default node timeout)."""
    from langgraph.graph import END, START, StateGraph

    from wtb_prefect import ExecutionConfig, WorkflowProject

    def graph():
        g = StateGraph(WhereState)
        for name in ("first", "second", "third"):
            g.add_node(name, echo)
        g.add_edge(START, "first")
        g.add_edge("first", "second")
        g.add_edge("second", "third")
        g.add_edge("third", END)
        return g.compile()

    return WorkflowProject(
        name="threadpool_echo", graph_factory=graph, execution=ExecutionConfig(batch_executor="threadpool")
    )


def shout(state: WhereState) -> dict:
    """Print the query as the node's last act (its worker's output reaches the driver's console)."""
    print(f"node says: {state.get('query', '')}", flush=True)
    return {"job_id": state.get("query", "")}


def build_printing_project():
    """One Ray node that prints just before it returns."""
    from langgraph.graph import END, START, StateGraph

    from wtb_prefect import ExecutionConfig, NodeResourceConfig, WorkflowProject

    def graph():
        g = StateGraph(WhereState)
        g.add_node("shout", shout)
        g.add_edge(START, "shout")
        g.add_edge("shout", END)
        return g.compile()

    return WorkflowProject(
        name="printing_node",
        graph_factory=graph,
        execution=ExecutionConfig(default_node_resources=NodeResourceConfig(num_cpus=0.25, memory="64MB")),
    )
