"""WTBTestBench: the main entry point (specification section 9)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from prefect.task_runners import ThreadPoolTaskRunner

from .engine import BatchPlan, batch_test_flow, prepare_batch, run_flow, use_prepared_plan
from .errors import UnknownExecutionError, UnknownProjectError
from .project import WorkflowProject
from .registry import publish_project
from .results import BatchTestResult, ExecutionResult
from .services.prefect_server import ensure_prefect_api, use_prefect_api
from .settings import WTBSettings, get_settings

__all__ = ["WTBTestBench"]


class WTBTestBench:
    """Register workflow projects, run them singly or over a variant matrix, inspect them.

    Every run is a Prefect flow run on the configured Prefect API (the
    embedded server is started on first use when none answers), whose node
    task runs execute on Ray with each node's resources.

    Example:
        ```python
        wtb = WTBTestBench()
        wtb.register_project(project)
        result = wtb.run(project="rag_pipeline", initial_state={"query": "What is LangGraph?"})
        batch = wtb.run_batch_test(
            project="rag_pipeline",
            variant_matrix=[{"retriever": "default"}, {"retriever": "bm25_retriever"}],
            test_cases=[{"query": "What is LangGraph?"}],
        )
        print(batch.summary())
        ```
    """

    def __init__(self, settings: WTBSettings | None = None) -> None:
        self.settings = settings or get_settings()
        self._projects: dict[str, WorkflowProject] = {}
        self._executions: dict[str, tuple[str, Any]] = {}

    # ─── Project management ───

    def register_project(self, project: WorkflowProject) -> None:
        """Register a workflow project (a later one of the same name replaces it)."""
        if not isinstance(project, WorkflowProject):
            raise TypeError(f"register_project takes a WorkflowProject, got {type(project).__name__}")
        self._projects[project.name] = project
        publish_project(project)

    def get_project(self, name: str) -> WorkflowProject:
        """A registered project.

        Raises:
            UnknownProjectError: no project of that name is registered.
        """
        try:
            return self._projects[name]
        except KeyError:
            raise UnknownProjectError(
                f"no project named {name!r} is registered; registered: {sorted(self._projects)}. "
                "Fix: wtb.register_project(project) first"
            ) from None

    def list_projects(self) -> list[str]:
        """Names of the registered projects."""
        return sorted(self._projects)

    # ─── Execution ───

    def run(
        self,
        project: str,
        initial_state: dict[str, Any],
        variant_config: dict[str, str] | None = None,
        workflow_variant: str | None = None,
    ) -> ExecutionResult:
        """Run a single execution and return its result.

        Raises:
            UnknownVariantError, UnknownNodeError, StateValidationError,
            ResourceUnsatisfiableError: before any work starts.
        """
        proj = self.get_project(project)
        choice = dict(variant_config or {})
        if workflow_variant:
            choice.setdefault("_workflow", workflow_variant)
        execution_id = f"{proj.name}-{uuid.uuid4().hex[:12]}"
        plan = prepare_batch(proj, [choice], [initial_state], execution_ids=[execution_id], settings=self.settings)
        with self._services(plan):
            flow = run_flow.with_options(flow_run_name=f"{proj.name}-run-{execution_id[-12:]}")
            if plan.mode != "ray":
                flow = flow.with_options(task_runner=ThreadPoolTaskRunner())
            result = flow(project=proj.name, initial_state=initial_state, variant_config=choice,
                          execution_id=execution_id)
        self._remember(plan)
        return result

    def run_batch_test(
        self,
        project: str,
        variant_matrix: list[dict[str, str]],
        test_cases: list[dict[str, Any]],
        parallelism: int | None = None,
        on_result: Callable[[ExecutionResult], None] | None = None,
    ) -> BatchTestResult:
        """Run every variant combination on every test case; one Prefect flow run.

        Args:
            project: name of a registered project.
            variant_matrix: ``{node: variant, "_workflow": workflow_variant}``
                dicts; omitted nodes use their default implementation.
            test_cases: initial states (optionally with ``expected`` and ``case_id``).
            parallelism: executions at once; None = ``RayConfig.max_concurrent_workflows``.
            on_result: called with each execution's result as it finishes
                (e.g. to drive a progress bar).

        Raises:
            UnknownVariantError, UnknownNodeError, StateValidationError,
            ResourceUnsatisfiableError, ConfigError: before any work starts.
        """
        proj = self.get_project(project)
        plan = prepare_batch(proj, variant_matrix, test_cases, parallelism=parallelism, settings=self.settings)
        plan.on_result = on_result
        with self._services(plan):
            flow = batch_test_flow.with_options(flow_run_name=f"{proj.name}-batch-{plan.batch_id}")
            if plan.mode != "ray":
                flow = flow.with_options(task_runner=ThreadPoolTaskRunner())
            result = flow(
                project=proj.name,
                variant_matrix=variant_matrix,
                test_cases=test_cases,
                parallelism=parallelism,
                batch_id=plan.batch_id,
            )
        self._remember(plan)
        return result

    # ─── Inspection ───

    def get_state(self, execution_id: str) -> dict[str, Any]:
        """The current state values of an execution (from its latest checkpoint)."""
        graph, config = self._thread(execution_id)
        return dict(graph.get_state(config).values)

    def get_checkpoints(self, execution_id: str) -> list[Any]:
        """Every checkpoint of an execution, newest first (LangGraph ``StateSnapshot`` objects)."""
        graph, config = self._thread(execution_id)
        return list(graph.get_state_history(config))

    # ─── Internals ───

    @contextlib.contextmanager
    def _services(self, plan: BatchPlan) -> Iterator[None]:
        """Prefect API (embedded server if needed), Ray with resource checks, the prepared plan."""
        api_url = ensure_prefect_api(self.settings)
        with use_prefect_api(api_url):
            if plan.mode == "ray":
                from .services.ray_cluster import check_resources, connect_ray

                connect_ray(plan.project.execution.ray_config)
                check_resources(plan.resource_requests())
            with use_prepared_plan(plan):
                yield

    def _remember(self, plan: BatchPlan) -> None:
        for item in plan.items:
            self._executions[item.execution_id] = (plan.project.name, item.compiled.graph)

    def _thread(self, execution_id: str) -> tuple[Any, dict[str, Any]]:
        try:
            _, graph = self._executions[execution_id]
        except KeyError:
            raise UnknownExecutionError(
                f"no execution {execution_id!r} was run by this test bench"
            ) from None
        return graph, {"configurable": {"thread_id": execution_id}}

