"""Project YAML files (Appendix A.2): round trip, the spec's format, and every bad input."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from examples.quickstart import project as quickstart
from tests.graphs import langgraph_features
from wtb_prefect import WorkflowProject
from wtb_prefect.define.registry import load_data, resolve_project
from wtb_prefect.define.yaml_io import ProjectFileError
from wtb_prefect.errors import ProjectError, UnknownProjectError, WTBError

SPEC_STYLE = """\
name: rag_pipeline
description: RAG Pipeline for Q&A

workflow:
  module: tests.graphs.langgraph_features
  factory: rag_graph
  state_schema: tests.graphs.langgraph_features.RAGState

variants:
  nodes:
    retriever:
      - name: prefix_retriever
        module: tests.graphs.langgraph_features
        function: prefix_retriever
        resources:
          num_cpus: 0.5
        environment:
          python: "3.11"
          dependencies: [rank-bm25>=0.2]
  workflows:
    - name: rag_with_reranker
      module: tests.graphs.langgraph_features
      factory: rag_with_reranker_graph

file_tracking:
  enabled: true
  paths:
    - ./data/
    - ./outputs/

environment:
  granularity: node
  default:
    python: "3.11"
    dependencies:
      - pyyaml>=6
  node_environments:
    generator:
      env_vars: {MODE: test}

execution:
  batch_executor: ray
  ray:
    address: auto
    max_concurrent_workflows: 4
  node_resources:
    retriever:
      num_cpus: 2
    generator:
      num_cpus: 1
      memory: 256MB
"""


def write(tmp_path: Path, text: str, name: str = "wtb_project.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_spec_format_loads_into_configs(tmp_path: Path) -> None:
    project = WorkflowProject.from_yaml(write(tmp_path, SPEC_STYLE))
    assert project.name == "rag_pipeline"
    assert project.description == "RAG Pipeline for Q&A"
    assert project.graph_factory is langgraph_features.rag_graph
    assert project.state_schema is langgraph_features.RAGState
    assert project.root == tmp_path.resolve()
    variant = project.get_variant("retriever", "prefix_retriever")
    assert variant.implementation is langgraph_features.prefix_retriever
    assert variant.resources.num_cpus == 0.5
    assert variant.environment.python_version == "3.11"
    assert project.get_workflow_variant("rag_with_reranker").graph_factory is langgraph_features.rag_with_reranker_graph
    assert project.file_tracking.enabled and project.file_tracking.tracked_paths == ["./data/", "./outputs/"]
    assert project.environment.granularity == "node"
    assert project.environment.default_env.dependencies == ["pyyaml>=6"]
    assert project.environment.node_environments["generator"].env_vars == {"MODE": "test"}
    assert project.execution.ray_config.max_concurrent_workflows == 4
    assert project.execution.node_resources["retriever"].num_cpus == 2
    assert project.execution.node_resources["generator"].memory_bytes == 256_000_000


def test_spec_format_round_trip(tmp_path: Path) -> None:
    first = WorkflowProject.from_yaml(write(tmp_path, SPEC_STYLE))
    text = first.to_yaml(tmp_path / "again.yaml")
    second = WorkflowProject.from_yaml(tmp_path / "again.yaml")
    assert second.to_yaml() == text
    for section in ("file_tracking", "environment", "execution"):
        assert getattr(second, section) == getattr(first, section)
    assert second.get_variant("retriever", "prefix_retriever") == first.get_variant("retriever", "prefix_retriever")
    assert "paths:" in text and "ray:" in text and "python: '3.11'" in text  # the spec's short keys


def test_quickstart_round_trip_runs_the_same(tmp_path: Path) -> None:
    original = quickstart.build_project()
    text = original.to_yaml(tmp_path / "quickstart.yaml")
    loaded = WorkflowProject.from_yaml(tmp_path / "quickstart.yaml")
    assert loaded.to_yaml() == text
    assert loaded.name == original.name
    assert loaded.list_variants() == original.list_variants()
    assert loaded.list_workflow_variants() == original.list_workflow_variants()
    assert loaded.evaluators == original.evaluators
    assert loaded.execution == original.execution
    case = {"query": quickstart.TEST_CASES[0]["query"]}
    assert loaded.graph_factory().invoke(case) == original.graph_factory().invoke(case)


# Each bad file: (yaml text, key named in the message, line, words in the message)
BAD = {
    "unknown top-level key": (
        "name: p\nworkflow: {module: tests.graphs.langgraph_features, factory: rag_graph}\nvariant: {}\n",
        "variant",
        3,
        "not a known key",
    ),
    "unknown nested key under the spec alias": (
        "name: p\nworkflow: {module: tests.graphs.langgraph_features, factory: rag_graph}\nexecution:\n  ray:\n    adress: auto\n",
        "execution.ray.adress",
        5,
        "not a known key",
    ),
    "missing module": (
        "name: p\nworkflow:\n  module: no_such_module_xyz\n  factory: f\n",
        "workflow.module",
        3,
        "cannot be imported",
    ),
    "missing factory attribute": (
        "name: p\nworkflow:\n  module: tests.graphs.langgraph_features\n  factory: no_such_factory\n",
        "workflow.factory",
        4,
        "has no attribute",
    ),
    "missing variant function": (
        "name: p\nworkflow: {module: tests.graphs.langgraph_features, factory: rag_graph}\nvariants:\n  nodes:\n    retriever:\n"
        "      - name: x\n        module: tests.graphs.langgraph_features\n        function: nope\n",
        "variants.nodes.retriever[0].function",
        8,
        "has no attribute",
    ),
    "missing state schema": (
        "name: p\nworkflow:\n  module: tests.graphs.langgraph_features\n  factory: rag_graph\n  state_schema: tests.graphs.langgraph_features.NoState\n",
        "workflow.state_schema",
        5,
        "has no attribute",
    ),
    "attribute that is not a function": (
        "name: p\nworkflow:\n  module: tests.graphs.langgraph_features\n  factory: CORPUS\n",
        "workflow.factory",
        4,
        "not a function",
    ),
    "factory that does not return a compiled graph": (
        "name: p\nworkflow:\n  module: tests.graphs.langgraph_features\n  factory: uncompiled_graph\n",
        "workflow.factory",
        4,
        "compile",
    ),
    "wrong type: text for a number": (
        "name: p\nworkflow: {module: tests.graphs.langgraph_features, factory: rag_graph}\nexecution:\n  ray:\n"
        "    max_concurrent_workflows: ten\n",
        "execution.ray.max_concurrent_workflows",
        5,
        "valid integer",
    ),
    "wrong type: mapping where a list goes": (
        "name: p\nworkflow: {module: tests.graphs.langgraph_features, factory: rag_graph}\nvariants:\n  nodes:\n    retriever: {name: x}\n",
        "variants.nodes.retriever",
        5,
        "valid list",
    ),
    "wrong type: bad memory string": (
        "name: p\nworkflow: {module: tests.graphs.langgraph_features, factory: rag_graph}\nexecution:\n  node_resources:\n"
        "    retriever:\n      memory: lots\n",
        "execution.node_resources.retriever.memory",
        6,
        "cannot parse memory",
    ),
    "required key missing": (
        "name: p\nworkflow:\n  module: tests.graphs.langgraph_features\n",
        "workflow.factory",
        2,
        "is required",
    ),
    "variant for an unknown node": (
        "name: p\nworkflow: {module: tests.graphs.langgraph_features, factory: rag_graph}\nvariants:\n  nodes:\n    retreiver:\n"
        "      - {name: x, module: tests.graphs.langgraph_features, function: prefix_retriever}\n",
        "variants.nodes.retreiver",
        5,
        "no graph of project",
    ),
    "bad project name": (
        "name: 'not a name!'\nworkflow: {module: tests.graphs.langgraph_features, factory: rag_graph}\n",
        "name",
        1,
        "identifier-like",
    ),
    "file tracking enabled without paths": (
        "name: p\nworkflow: {module: tests.graphs.langgraph_features, factory: rag_graph}\nfile_tracking:\n  enabled: true\n",
        "file_tracking",
        3,
        "tracked_paths is empty",
    ),
    "repeated key": (
        "name: p\nworkflow: {module: tests.graphs.langgraph_features, factory: rag_graph}\nname: q\n",
        "name",
        3,
        "repeats the key (first at line 1)",
    ),
    "alias and field name together": (
        "name: p\nworkflow: {module: tests.graphs.langgraph_features, factory: rag_graph}\nexecution:\n  ray: {}\n  ray_config: {}\n",
        "execution.ray_config",
        5,
        "repeats the key",
    ),
    "invalid YAML": (
        "name: p\nworkflow:\n  module: tests.graphs.langgraph_features\n   factory: rag_graph\n",
        "(syntax)",
        4,
        "not valid YAML",
    ),
    "top level is a list": ("- name: p\n", "(top level)", 1, "not a mapping"),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_file_names_file_key_and_line(tmp_path: Path, case: str) -> None:
    text, key, line, words = BAD[case]
    path = write(tmp_path, text)
    with pytest.raises(ProjectFileError) as info:
        WorkflowProject.from_yaml(path)
    error = info.value
    assert isinstance(error, WTBError)
    assert (error.key, error.line) == (key, line), str(error)
    message = str(error)
    assert str(path) in message and f"line {line}" in message and f"'{key}'" in message
    assert words in message
    assert "Fix:" in message


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(ProjectFileError, match="cannot read it"):
        WorkflowProject.from_yaml(tmp_path / "absent.yaml")
    with pytest.raises(ProjectFileError, match="is empty"):
        WorkflowProject.from_yaml(write(tmp_path, "# nothing\n"))


def _local_factory():
    def factory():
        return langgraph_features.rag_graph()

    return factory


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda: WorkflowProject("p", graph_factory=lambda: langgraph_features.rag_graph()), "the graph factory"),
        (lambda: WorkflowProject("p", graph_factory=_local_factory()), "the graph factory"),
    ],
    ids=["lambda factory", "closure factory"],
)
def test_to_yaml_refuses_what_cannot_be_imported(make, words: str) -> None:
    with pytest.raises(ProjectError, match=words):
        make().to_yaml()


def test_to_yaml_refuses_lambda_variant_and_node_updates() -> None:
    project = WorkflowProject("p", graph_factory=langgraph_features.rag_graph)
    project.register_variant("retriever", "lam", lambda state: {"documents": []})
    with pytest.raises(ProjectError, match="variant retriever:lam"):
        project.to_yaml()
    project.remove_variant("retriever", "lam")
    project.update_node("retriever", langgraph_features.prefix_retriever)
    with pytest.raises(ProjectError, match="permanent node updates"):
        project.to_yaml()


def test_references_resolve_yaml_paths_and_modules(tmp_path: Path) -> None:
    path = write(tmp_path, SPEC_STYLE, "rag.yml")
    assert resolve_project(str(path)).name == "rag_pipeline"
    project = resolve_project("examples.quickstart.project:build_project")
    assert project.name == "quickstart_qa" and project.list_variants() == {"retriever": ["name_match"]}
    with pytest.raises(UnknownProjectError, match="does not exist"):
        resolve_project(str(tmp_path / "missing.yaml"))
    with pytest.raises(UnknownProjectError, match="cannot import"):
        resolve_project("examples.quickstart.project:no_such")
    with pytest.raises(UnknownProjectError, match="not a WorkflowProject"):
        resolve_project("examples.quickstart.project:TEST_CASES")
    with pytest.raises(UnknownProjectError, match="not registered"):
        resolve_project("nothing-like-a-reference")
    with pytest.raises(ProjectFileError):
        resolve_project(str(write(tmp_path, "name: p\n", "bad.yaml")))


def test_batch_data_inline_file_or_module(tmp_path: Path) -> None:
    from wtb_prefect.errors import ConfigError

    assert load_data([{"a": 1}], "test_cases") == [{"a": 1}]
    assert load_data('[{"a": 1}]', "test_cases") == [{"a": 1}]
    (tmp_path / "cases.yaml").write_text("- {query: hi}\n")
    assert load_data(str(tmp_path / "cases.yaml"), "test_cases") == [{"query": "hi"}]
    assert load_data("examples.quickstart.project:VARIANT_MATRIX", "variant_matrix") == quickstart.VARIANT_MATRIX
    with pytest.raises(ConfigError, match="test_cases"):
        load_data("no/such/file.json", "test_cases")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_data("[{oops", "test_cases")
