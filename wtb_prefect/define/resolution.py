"""Variant choices and the one place that resolves a node's implementation,
resources and environment: variant > node > workflow default.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from wtb_prefect.config import EnvSpec, NodeResourceConfig
from wtb_prefect.define.project import DEFAULT, WORKFLOW_KEY, WorkflowProject
from wtb_prefect.errors import UnknownNodeError, UnknownVariantError

__all__ = [
    "VariantChoice",
    "ignored_environments",
    "parse_variant_choice",
    "resolve_environment",
    "resolve_implementation",
    "resolve_resources",
]


@dataclass(frozen=True)
class VariantChoice:
    """Which workflow variant and which node variants one execution uses.

    ``nodes`` holds only non-default choices, so two spellings of the same
    combination compare equal.
    """

    workflow: str = DEFAULT
    nodes: tuple[tuple[str, str], ...] = field(default=())

    @property
    def node_map(self) -> dict[str, str]:
        """The non-default node variants as a dict."""
        return dict(self.nodes)

    def variant_of(self, node: str) -> str:
        """The variant name chosen for ``node`` ("default" when none)."""
        return self.node_map.get(node, DEFAULT)

    @property
    def label(self) -> str:
        """A short readable name, e.g. ``retriever=bm25,_workflow=rag_with_reranker``."""
        parts = [f"{n}={v}" for n, v in self.nodes]
        if self.workflow != DEFAULT:
            parts.append(f"{WORKFLOW_KEY}={self.workflow}")
        return ",".join(parts) or DEFAULT

    def as_dict(self) -> dict[str, str]:
        """The choice in the spec's ``variant_matrix`` form."""
        return {WORKFLOW_KEY: self.workflow, **self.node_map}


def parse_variant_choice(
    project: WorkflowProject,
    variant_config: Mapping[str, str] | None = None,
    workflow_variant: str | None = None,
) -> VariantChoice:
    """Validate a ``variant_config`` / ``variant_matrix`` entry against the project.

    Raises:
        UnknownVariantError: a node or workflow variant that is not registered.
        UnknownNodeError: a node that the chosen graph does not have.
    """
    config = dict(variant_config or {})
    workflow = config.pop(WORKFLOW_KEY, None) or workflow_variant or DEFAULT
    if workflow_variant and workflow != workflow_variant:
        raise UnknownVariantError(
            f"variant_config says {WORKFLOW_KEY}={workflow!r} but workflow_variant={workflow_variant!r}; "
            "give one of them"
        )
    graph_nodes = project.nodes(workflow)  # raises UnknownVariantError for a bad workflow
    chosen: list[tuple[str, str]] = []
    for node, variant in sorted(config.items()):
        if not isinstance(variant, str):
            raise UnknownVariantError(f"variant for node {node!r} must be a variant name (str), got {variant!r}")
        if node not in graph_nodes:
            where = "the main workflow" if workflow == DEFAULT else f"workflow variant {workflow!r}"
            raise UnknownNodeError(
                f"variant_config names node {node!r}, which {where} of project {project.name!r} "
                f"does not have. Nodes: {graph_nodes}. Fix: remove it or pick another {WORKFLOW_KEY}"
            )
        if variant != DEFAULT:
            project.get_variant(node, variant)  # raises UnknownVariantError
            chosen.append((node, variant))
    return VariantChoice(workflow=workflow, nodes=tuple(chosen))


def resolve_implementation(project: WorkflowProject, choice: VariantChoice, node: str) -> Callable[..., Any] | None:
    """The callable that replaces ``node``'s own implementation, or None to keep it.

    Order: the chosen node variant > a permanent ``update_node`` of the current
    version (main workflow only) > the graph's own node.
    """
    variant = choice.variant_of(node)
    if variant != DEFAULT:
        return project.get_variant(node, variant).implementation
    if choice.workflow == DEFAULT:
        return project.current_version.node_overrides.get(node)
    return None


def resolve_resources(project: WorkflowProject, choice: VariantChoice, node: str) -> NodeResourceConfig:
    """The Ray resources of ``node``: variant > ``node_resources[node]`` > default."""
    variant = choice.variant_of(node)
    if variant != DEFAULT:
        resources = project.get_variant(node, variant).resources
        if resources is not None:
            return resources
    execution = project.execution
    return execution.node_resources.get(node, execution.default_node_resources)


def resolve_environment(project: WorkflowProject, choice: VariantChoice, node: str) -> EnvSpec | None:
    """The environment ``node`` runs in, or None for the current environment.

    Order, as far as ``EnvironmentConfig.granularity`` allows: the node
    variant's environment > ``node_environments[node]`` > the workflow
    variant's environment > ``default_env``.
    """
    env = project.environment
    if env.use_current_env:
        return None
    variant = choice.variant_of(node)
    if env.granularity == "variant" and variant != DEFAULT:
        registered = project.get_variant(node, variant).environment
        spec = registered or env.variant_environments.get(f"{node}:{variant}")
        if spec is not None:
            return spec
    if env.granularity in ("node", "variant") and node in env.node_environments:
        return env.node_environments[node]
    if choice.workflow != DEFAULT:
        spec = env.variant_environments.get(f"{WORKFLOW_KEY}:{choice.workflow}")
        if spec is not None:
            return spec
    return env.default_env


def ignored_environments(project: WorkflowProject, choice: VariantChoice, node: str) -> list[str]:
    """Environments declared for ``node`` under ``choice`` that ``EnvironmentConfig.granularity`` ignores.

    Each entry names the declaration and the granularity that would apply it,
    e.g. ``variant_environments['retriever:bm25'] (needs 'variant')``: an
    environment declared and silently unused reads as a bug.
    """
    env = project.environment
    if env.use_current_env:
        return []
    ignored: list[str] = []
    variant = choice.variant_of(node)
    if env.granularity != "variant" and variant != DEFAULT:
        if project.get_variant(node, variant).environment is not None:
            ignored.append(f"the environment given to register_variant({node!r}, {variant!r}) (needs 'variant')")
        if f"{node}:{variant}" in env.variant_environments:
            ignored.append(f"variant_environments['{node}:{variant}'] (needs 'variant')")
    if env.granularity == "workflow" and node in env.node_environments:
        ignored.append(f"node_environments[{node!r}] (needs 'node' or 'variant')")
    return ignored
