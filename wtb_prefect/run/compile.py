"""Compilation: a project plus a variant choice becomes a runnable LangGraph graph.

The project's own graph is built by its factory; the builder (``StateGraph``)
is copied with every node's runnable replaced by a dispatching wrapper (with
the chosen implementation inside) and compiled again, so edges, conditional
edges, reducers, ``Send``, ``Command``, retry policies and interrupts stay
exactly LangGraph's.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import threading

from langgraph.checkpoint.base import BaseCheckpointSaver

from wtb_prefect.define.introspect import build_graph, callable_name, source_hash
from wtb_prefect.define.project import DEFAULT, WorkflowProject
from wtb_prefect.define.resolution import (
    VariantChoice,
    ignored_environments,
    resolve_environment,
    resolve_implementation,
    resolve_resources,
)
from wtb_prefect.run.context import BatchExecutor, CompiledVariant, NodePlan
from wtb_prefect.run.dispatch import body_and_accepts, make_node_callable, node_task_for
from wtb_prefect.run.environments import prepare_node_environment
from wtb_prefect.run.lanes import LANE_OPTION, lane_spec
from wtb_prefect.run.langgraph_private import RunnableCallable
from wtb_prefect.run.rate_limits import group_of

__all__ = ["compile_variant"]

_DEFAULT_ERROR_HANDLER = "__default_error_handler__"


logger = logging.getLogger(__name__)
_warned: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()


def _warn_ignored_environments(project: WorkflowProject, choice: VariantChoice, node: str) -> None:
    """Warn once per project and declaration about an environment the granularity ignores."""
    granularity = project.environment.granularity
    for what in ignored_environments(project, choice, node):
        with _warned_lock:
            if (project.name, what) in _warned:
                continue
            _warned.add((project.name, what))
        logger.warning(
            "project %r: %s is ignored because EnvironmentConfig.granularity is %r. "
            "Fix: set EnvironmentConfig(granularity=...) as noted, or remove the declaration",
            project.name,
            what,
            granularity,
        )


def _env_user(project: str, choice: VariantChoice, node: str) -> str:
    """How an environment's audit names a node that uses it: ``project/node[:variant][@workflow]``."""
    variant = choice.variant_of(node)
    label = f"{project}/{node}" + (f":{variant}" if variant != DEFAULT else "")
    return label + (f"@{choice.workflow}" if choice.workflow != DEFAULT else "")


def compile_variant(
    project: WorkflowProject,
    choice: VariantChoice,
    *,
    mode: BatchExecutor,
    checkpointer: BaseCheckpointSaver | None,
) -> CompiledVariant:
    """Build the graph of ``choice`` with every node dispatched as a Prefect task.

    Nodes that are not plain callables (a compiled subgraph used as a node, an
    error handler) run inline in the flow process.
    """
    if choice.workflow == DEFAULT:
        factory = project.graph_factory
        schema = project.state_schema
        version = project.version
    else:
        wf = project.get_workflow_variant(choice.workflow)
        factory, schema, version = wf.graph_factory, wf.state_schema, f"{project.version}+{wf.name}"
    base = build_graph(factory, f"project {project.name!r}")
    builder = copy.copy(base.builder)
    builder.nodes = dict(base.builder.nodes)
    if getattr(builder, "_node_defaults", None) is not None and builder._node_defaults.error_handler is not None:
        builder.nodes.pop(_DEFAULT_ERROR_HANDLER, None)  # compile() adds it again

    execution = project.execution
    ray_config = execution.ray_config
    plans: dict[str, NodePlan] = {}
    inline: list[str] = []
    for name, spec in list(builder.nodes.items()):
        if name.startswith("__") or spec.is_error_handler:
            continue
        override = resolve_implementation(project, choice, name)
        runnable = spec.runnable
        if override is None and not isinstance(runnable, RunnableCallable):
            inline.append(name)
            continue
        func, accepts = body_and_accepts(override if override is not None else runnable)
        resources = resolve_resources(project, choice, name)
        rate_config = group_of(execution.rate_limits, resources.rate_limit, _env_user(project.name, choice, name))
        _warn_ignored_environments(project, choice, name)
        # Built (or reused) here, before any work starts: a bad spec raises now.
        node_env = prepare_node_environment(
            project.environment,
            resolve_environment(project, choice, name),
            used_by=_env_user(project.name, choice, name),
            mode=mode,
        )
        options = resources.ray_options()
        # Prefect alone retries (see RayConfig.max_retries): a dead worker is a failed attempt.
        options["max_retries"] = 0
        if node_env is not None and node_env.ray_runtime_env():
            options["runtime_env"] = node_env.ray_runtime_env()
        options[LANE_OPTION] = lane_spec(
            name,
            func,
            resources,
            options,
            limit_key=_env_user(project.name, choice, name),
            queue_timeout=execution.queue_timeout,
            rate_config=rate_config,
        )
        plan = NodePlan(
            node=name,
            func=func,
            accepts=accepts,
            implementation=callable_name(getattr(func, "__wrapped__", func)),
            version=source_hash(func),
            ray_options=options,
            timeout_s=float(execution.node_timeouts.get(name, execution.default_timeout)),
            retries=ray_config.max_retries,
            retry_delay_s=ray_config.retry_delay,
            resources=resources.model_dump(),
            request=resources,
            environment=None if node_env is None else node_env.provenance(),
        )
        plan.task = node_task_for(name, plan.timeout_s, plan.retries, plan.retry_delay_s)
        plans[name] = plan
        wrapper = RunnableCallable(
            make_node_callable(plan, mode),
            name=name,
            tags=getattr(runnable, "tags", None),
            trace=getattr(runnable, "trace", False),
        )
        builder.nodes[name] = dataclasses.replace(spec, runnable=wrapper)

    graph = builder.compile(
        checkpointer=checkpointer,
        interrupt_before=base.interrupt_before_nodes,
        interrupt_after=base.interrupt_after_nodes,
        store=base.store,
        cache=base.cache,
        debug=base.debug,
        name=base.name,
    )
    return CompiledVariant(
        project=project.name,
        choice=choice,
        graph=graph,
        state_schema=schema,
        nodes=plans,
        inline_nodes=inline,
        project_version=version,
    )
