"""WorkflowProject: a LangGraph workflow with its variants, versions and configs.

A project holds a graph factory and its state schema, alternative node
implementations (node variants) and alternative graph structures (workflow
variants) for A/B comparison, and a version history of permanent updates.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langgraph.graph.state import CompiledStateGraph

from wtb_prefect.config import EnvironmentConfig, EnvSpec, ExecutionConfig, FileTrackingConfig, NodeResourceConfig
from wtb_prefect.define.introspect import build_graph, callable_name, node_names, source_hash
from wtb_prefect.define.yaml_io import dump_project, load_project
from wtb_prefect.errors import ProjectError, UnknownNodeError, UnknownVariantError, UnknownVersionError

__all__ = ["ComparativeEvaluator", "NodeVariant", "ProjectVersion", "WorkflowProject", "WorkflowVariant", "DEFAULT"]

DEFAULT = "default"
"""The name that selects a node's (or the workflow's) own implementation."""

WORKFLOW_KEY = "_workflow"
"""The key of a variant choice that selects a workflow variant."""


@dataclass(frozen=True)
class ComparativeEvaluator:
    """A pairwise judge: ``fn(state_a, state_b, test_case) -> float in [-1, 1]``, positive when ``a`` is better.

    With ``both_orders`` each case is judged twice, the variant first and then
    the baseline first, and the two verdicts are averaged (cancels a judge's
    position bias).
    """

    name: str
    fn: Callable[[Any, Any, dict[str, Any]], float]
    both_orders: bool = False


@dataclass(frozen=True)
class NodeVariant:
    """An alternative implementation of one node."""

    node: str
    name: str
    implementation: Callable[..., Any]
    description: str = ""
    environment: EnvSpec | None = None
    resources: NodeResourceConfig | None = None

    @property
    def version(self) -> str:
        """Hash of the implementation's source."""
        return source_hash(self.implementation)


@dataclass(frozen=True)
class WorkflowVariant:
    """An alternative graph structure of the workflow."""

    name: str
    graph_factory: Callable[[], CompiledStateGraph]
    description: str = ""
    state_schema: type | None = None
    nodes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProjectVersion:
    """One entry of the version history: a graph factory plus permanent node updates."""

    version: str
    kind: str  # "initial" | "node" | "workflow"
    graph_factory: Callable[[], CompiledStateGraph]
    state_schema: type | None
    node_overrides: dict[str, Callable[..., Any]] = field(default_factory=dict)
    reason: str = ""
    created_at: float = field(default_factory=time.time)
    nodes: tuple[str, ...] = ()

    def describe(self) -> dict[str, Any]:
        """A JSON-friendly summary of this version."""
        return {
            "version": self.version,
            "kind": self.kind,
            "graph_factory": callable_name(self.graph_factory),
            "node_overrides": {
                node: f"{callable_name(fn)}@{source_hash(fn)}" for node, fn in self.node_overrides.items()
            },
            "reason": self.reason,
            "created_at": self.created_at,
        }


def _coerce(value: Any, model: type, field_name: str) -> Any:
    if value is None:
        return model()
    if isinstance(value, model):
        return value
    if isinstance(value, dict):
        return model.model_validate(value)
    raise ProjectError(f"{field_name} must be a {model.__name__} or a dict of its fields, got {type(value).__name__}")


class WorkflowProject:
    """A LangGraph workflow registered for testing, with its variants and configs.

    Example:
        ```python
        project = WorkflowProject(
            name="rag_pipeline",
            graph_factory=create_rag_graph,
            state_schema=RAGState,
            execution=ExecutionConfig(default_node_resources=NodeResourceConfig(num_cpus=0.5)),
        )
        project.register_variant(node="retriever", name="bm25_retriever", implementation=bm25)
        ```

    Args:
        name: unique name of the project in a test bench.
        graph_factory: a function returning the compiled LangGraph graph.
        state_schema: the graph's state type (pydantic model, TypedDict or dataclass).
        description: free text.
        file_tracking, environment, execution: the configs of :mod:`wtb_prefect.config` (objects or dicts).
        root: the project root that tracked paths are relative to (default: the
            current working directory at construction).
    """

    def __init__(
        self,
        name: str,
        graph_factory: Callable[[], CompiledStateGraph],
        state_schema: type | None = None,
        description: str = "",
        file_tracking: FileTrackingConfig | dict | None = None,
        environment: EnvironmentConfig | dict | None = None,
        execution: ExecutionConfig | dict | None = None,
        root: str | Path | None = None,
    ) -> None:
        if not isinstance(name, str) or not name or not name.replace("-", "_").replace(".", "_").isidentifier():
            raise ProjectError(
                f"name must be a non-empty identifier-like string (letters, digits, _ - .), got {name!r}"
            )
        self.name = name
        self.description = description
        self.file_tracking: FileTrackingConfig = _coerce(file_tracking, FileTrackingConfig, "file_tracking")
        self.environment: EnvironmentConfig = _coerce(environment, EnvironmentConfig, "environment")
        self.execution: ExecutionConfig = _coerce(execution, ExecutionConfig, "execution")
        self.root = Path(root).resolve() if root is not None else Path.cwd()
        graph = build_graph(graph_factory, f"project {name!r}")
        self._versions: list[ProjectVersion] = [
            ProjectVersion(
                version="1.0",
                kind="initial",
                graph_factory=graph_factory,
                state_schema=state_schema or graph.builder.state_schema,
                nodes=tuple(node_names(graph)),
            )
        ]
        self._current = 0
        self._node_variants: dict[str, dict[str, NodeVariant]] = {}
        self._workflow_variants: dict[str, WorkflowVariant] = {}
        self.evaluators: dict[str, Callable[..., Any]] = {}
        self.comparative_evaluators: dict[str, ComparativeEvaluator] = {}

    # ─── Current definition ───

    @property
    def graph_factory(self) -> Callable[[], CompiledStateGraph]:
        """The graph factory of the current version."""
        return self.current_version.graph_factory

    @property
    def state_schema(self) -> type | None:
        """The state schema of the current version."""
        return self.current_version.state_schema

    @property
    def current_version(self) -> ProjectVersion:
        """The version that runs when no workflow variant is chosen."""
        return self._versions[self._current]

    @property
    def version(self) -> str:
        """The label of the current version ("1.0", "1.1", "2.0", ...)."""
        return self.current_version.version

    def nodes(self, workflow_variant: str = DEFAULT) -> list[str]:
        """The node names of the main workflow or of one workflow variant."""
        if workflow_variant == DEFAULT:
            return list(self.current_version.nodes)
        return list(self.get_workflow_variant(workflow_variant).nodes)

    def all_nodes(self) -> set[str]:
        """Every node name of the main workflow and all workflow variants."""
        names = set(self.current_version.nodes)
        for variant in self._workflow_variants.values():
            names.update(variant.nodes)
        return names

    # ─── Node-level variants ───

    def register_variant(
        self,
        node: str,
        name: str,
        implementation: Callable[..., Any],
        description: str = "",
        environment: EnvSpec | dict | None = None,
        resources: NodeResourceConfig | dict | None = None,
    ) -> None:
        """Register an alternative implementation of ``node`` for A/B testing.

        Raises:
            UnknownNodeError: no graph of the project (main or workflow variant) has ``node``.
            ProjectError: the name is reserved or taken, or the implementation is not callable.
        """
        if node not in self.all_nodes():
            raise UnknownNodeError(
                f"cannot register variant {name!r} for node {node!r}: no graph of project "
                f"{self.name!r} has that node. Nodes: {sorted(self.all_nodes())}. "
                "Fix: use one of those names, or register the workflow variant that adds the node first"
            )
        if not isinstance(name, str) or not name or name == DEFAULT:
            raise ProjectError(f"variant name must be a non-empty string other than {DEFAULT!r}, got {name!r}")
        if not callable(implementation):
            raise ProjectError(
                f"implementation of variant {node}:{name} must be callable, got {type(implementation).__name__}"
            )
        variants = self._node_variants.setdefault(node, {})
        if name in variants:
            raise ProjectError(
                f"node {node!r} already has a variant named {name!r}. "
                "Fix: remove_variant() it first or choose another name"
            )
        variants[name] = NodeVariant(
            node=node,
            name=name,
            implementation=implementation,
            description=description,
            environment=EnvSpec.model_validate(environment) if isinstance(environment, dict) else environment,
            resources=NodeResourceConfig.model_validate(resources) if isinstance(resources, dict) else resources,
        )

    def list_variants(self, node: str | None = None) -> dict[str, list[str]]:
        """Registered node variants by node, optionally only those of ``node``."""
        if node is not None:
            return {node: list(self._node_variants.get(node, {}))}
        return {n: list(v) for n, v in self._node_variants.items() if v}

    def get_variant(self, node: str, name: str) -> NodeVariant:
        """The registered variant ``name`` of ``node``.

        Raises:
            UnknownVariantError: no such variant.
        """
        try:
            return self._node_variants[node][name]
        except KeyError:
            known = list(self._node_variants.get(node, {}))
            raise UnknownVariantError(
                f"node {node!r} of project {self.name!r} has no variant {name!r}. "
                f"Registered: {[DEFAULT, *known]}. Fix: register_variant(node={node!r}, name={name!r}, ...) "
                "or pick a registered one"
            ) from None

    def remove_variant(self, node: str, name: str) -> None:
        """Remove a registered node variant."""
        self.get_variant(node, name)
        del self._node_variants[node][name]

    # ─── Workflow-level variants ───

    def register_workflow_variant(
        self,
        name: str,
        graph_factory: Callable[[], CompiledStateGraph],
        description: str = "",
        state_schema: type | None = None,
    ) -> None:
        """Register an alternative graph structure for architecture comparison.

        Raises:
            GraphFactoryError: the factory does not return a compiled graph.
            ProjectError: the name is reserved or taken.
        """
        if not isinstance(name, str) or not name or name == DEFAULT:
            raise ProjectError(f"workflow variant name must be a non-empty string other than {DEFAULT!r}")
        if name in self._workflow_variants:
            raise ProjectError(
                f"workflow variant {name!r} already exists. Fix: remove_workflow_variant({name!r}) first"
            )
        graph = build_graph(graph_factory, f"workflow variant {name!r}")
        self._workflow_variants[name] = WorkflowVariant(
            name=name,
            graph_factory=graph_factory,
            description=description,
            state_schema=state_schema or graph.builder.state_schema,
            nodes=tuple(node_names(graph)),
        )

    def list_workflow_variants(self) -> list[str]:
        """Names of the registered workflow variants."""
        return list(self._workflow_variants)

    def get_workflow_variant(self, name: str) -> WorkflowVariant:
        """The registered workflow variant ``name``.

        Raises:
            UnknownVariantError: no such workflow variant.
        """
        try:
            return self._workflow_variants[name]
        except KeyError:
            raise UnknownVariantError(
                f"project {self.name!r} has no workflow variant {name!r}. "
                f"Registered: {[DEFAULT, *self._workflow_variants]}. "
                f"Fix: register_workflow_variant(name={name!r}, graph_factory=...) or pick a registered one"
            ) from None

    def remove_workflow_variant(self, name: str) -> None:
        """Remove a registered workflow variant."""
        self.get_workflow_variant(name)
        del self._workflow_variants[name]

    # ─── Permanent updates and version history ───

    def update_node(self, node: str, new_implementation: Callable[..., Any], reason: str = "") -> None:
        """Permanently replace a node's implementation: a new minor version (1.0 -> 1.1).

        Raises:
            UnknownNodeError: the current graph has no such node.
        """
        current = self.current_version
        if node not in current.nodes:
            raise UnknownNodeError(
                f"cannot update node {node!r}: the current graph (v{current.version}) has nodes "
                f"{list(current.nodes)}. Fix: use one of them, or update_workflow() to add it"
            )
        if not callable(new_implementation):
            raise ProjectError(f"new_implementation for node {node!r} must be callable")
        major, _ = current.version.split(".", 1)
        minors = [int(v.version.split(".")[1]) for v in self._versions if v.version.split(".")[0] == major]
        self._append(
            ProjectVersion(
                version=f"{major}.{max(minors) + 1}",
                kind="node",
                graph_factory=current.graph_factory,
                state_schema=current.state_schema,
                node_overrides={**current.node_overrides, node: new_implementation},
                reason=reason,
                nodes=current.nodes,
            )
        )

    def update_workflow(
        self,
        graph_factory: Callable[[], CompiledStateGraph],
        version: str | None = None,
        changelog: str = "",
        state_schema: type | None = None,
    ) -> None:
        """Permanently replace the graph structure: a new major version (1.1 -> 2.0).

        Permanent node updates carry over to nodes that the new graph still has.

        Raises:
            GraphFactoryError: the factory does not return a compiled graph.
            ProjectError: ``version`` exists already.
        """
        graph = build_graph(graph_factory, f"update_workflow of project {self.name!r}")
        if version is None:
            version = f"{max(int(v.version.split('.')[0]) for v in self._versions) + 1}.0"
        if any(v.version == version for v in self._versions):
            raise ProjectError(f"version {version!r} already exists in project {self.name!r}; pick a new one")
        nodes = tuple(node_names(graph))
        self._append(
            ProjectVersion(
                version=version,
                kind="workflow",
                graph_factory=graph_factory,
                state_schema=state_schema or graph.builder.state_schema,
                node_overrides={n: fn for n, fn in self.current_version.node_overrides.items() if n in nodes},
                reason=changelog,
                nodes=nodes,
            )
        )

    def list_versions(self) -> list[dict[str, Any]]:
        """The version history, oldest first, each as a JSON-friendly dict."""
        return [{**v.describe(), "current": i == self._current} for i, v in enumerate(self._versions)]

    def rollback_version(self, version: str) -> None:
        """Make an earlier version current again; later versions stay in the history.

        Raises:
            UnknownVersionError: no such version.
        """
        for index, entry in enumerate(self._versions):
            if entry.version == version:
                self._current = index
                return
        raise UnknownVersionError(
            f"project {self.name!r} has no version {version!r}; versions: {[v.version for v in self._versions]}"
        )

    def _append(self, entry: ProjectVersion) -> None:
        self._versions.append(entry)
        self._current = len(self._versions) - 1

    # ─── Project files (YAML) ───

    @classmethod
    def from_yaml(cls, path: str | Path) -> WorkflowProject:
        """Load a project from a YAML file; errors name the file, key and line."""
        return load_project(path, cls)

    def to_yaml(self, path: str | Path | None = None) -> str:
        """This project as YAML text (written to ``path`` when given); every part must be importable."""
        return dump_project(self, path)

    # ─── Evaluators ───

    def register_evaluator(self, name: str, fn: Callable[..., Any]) -> None:
        """Register a scoring function ``fn(final_state, test_case) -> float | dict[str, float]``."""
        if not callable(fn):
            raise ProjectError(f"evaluator {name!r} must be callable")
        self.evaluators[name] = fn

    def register_comparative_evaluator(
        self, name: str, fn: Callable[[Any, Any, dict[str, Any]], float], both_orders: bool = False
    ) -> None:
        """Register a pairwise judge ``fn(state_a, state_b, test_case) -> float in [-1, 1]``.

        After each batch it judges every variant against the baseline, case by
        case: 1 means ``state_a`` (the variant) is better, -1 the baseline, 0 a
        tie. ``both_orders`` also asks with the baseline first and averages, to
        cancel position bias. The batch reports win/tie/loss rates with
        intervals (``batch.pairwise``, the summary, MLflow, the comparison artifact).

        Raises:
            ProjectError: ``fn`` is not callable or ``name`` is empty.
        """
        if not name or not isinstance(name, str):
            raise ProjectError(f"comparative evaluator name {name!r} must be a non-empty string")
        if not callable(fn):
            raise ProjectError(f"comparative evaluator {name!r} must be callable")
        self.comparative_evaluators[name] = ComparativeEvaluator(name, fn, both_orders)

    def __repr__(self) -> str:
        return (
            f"WorkflowProject(name={self.name!r}, version={self.version!r}, "
            f"variants={self.list_variants()}, workflow_variants={self.list_workflow_variants()})"
        )
