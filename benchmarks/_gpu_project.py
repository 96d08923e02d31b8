"""The quickstart with a GPU request on its retriever: bad input on a CPU-only machine."""

from __future__ import annotations


def build_project():
    from examples.quickstart.project import build_project as quickstart
    from wtb_prefect import NodeResourceConfig

    project = quickstart()
    project.execution.node_resources["retriever"] = NodeResourceConfig(num_gpus=1)
    project.name = "quickstart_gpu"
    return project
