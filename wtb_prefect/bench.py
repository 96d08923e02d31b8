"""WTBTestBench: the main entry point: register projects, run executions and batches, control them."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from prefect.task_runners import ThreadPoolTaskRunner

from wtb_prefect.analysis.batch_result import BatchTestResult
from wtb_prefect.batch.estimate import BatchEstimate, estimate_plan, recorded_results
from wtb_prefect.batch.execute import check_plan_resources
from wtb_prefect.batch.flows import batch_test_flow, run_flow
from wtb_prefect.batch.observers import BatchObserver, watching
from wtb_prefect.batch.plan import BatchPlan, offer_plan, prepare_batch, prepare_batch_resume, prepare_resume
from wtb_prefect.config import RaceConfig
from wtb_prefect.define.project import WORKFLOW_KEY, WorkflowProject
from wtb_prefect.define.registry import publish_project, published_projects
from wtb_prefect.errors import (
    ConfigError,
    ExecutionStateError,
    PrefectAPIUnavailableError,
    UnknownExecutionError,
    UnknownProjectError,
)
from wtb_prefect.integrations.files.api import list_file_snapshots, rollback_files
from wtb_prefect.results import ExecutionResult
from wtb_prefect.run.checkpoints import Checkpoint, find_checkpoint, list_checkpoints, rewind
from wtb_prefect.run.control import CHECKPOINT, PAUSE, request
from wtb_prefect.run.execution_index import BatchRecord, ExecutionIndex, ExecutionRecord, UnrecordedFlowRun, open_index
from wtb_prefect.services.prefect_outage import api_answers, bounded_api_waits, hold_back_buffered_work, is_api_error
from wtb_prefect.services.prefect_server import ensure_prefect_api, use_prefect_api
from wtb_prefect.settings import WTBSettings, get_settings

__all__ = ["WTBTestBench"]


class _ResultCallback(BatchObserver):
    """Calls ``on_result`` with each result of one batch (run_batch_test's ``on_result``)."""

    def __init__(self, on_result: Callable[[ExecutionResult], None]) -> None:
        self._on_result = on_result

    def on_result(self, plan: BatchPlan, result: ExecutionResult) -> None:
        self._on_result(result)


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
        self._graphs: dict[tuple[str, str, str], Any] = {}

    # ─── Project management ───

    def register_project(self, project: WorkflowProject) -> None:
        """Register a workflow project (a later one of the same name replaces it).

        Projects live in the process's one registry
        (:mod:`wtb_prefect.define.registry`), where the flows find them by name.
        """
        if not isinstance(project, WorkflowProject):
            raise TypeError(f"register_project takes a WorkflowProject, got {type(project).__name__}")
        publish_project(project)

    def get_project(self, name: str) -> WorkflowProject:
        """A registered project.

        Raises:
            UnknownProjectError: no project of that name is registered.
        """
        try:
            return published_projects()[name]
        except KeyError:
            raise UnknownProjectError(
                f"no project named {name!r} is registered; registered: {self.list_projects()}. "
                "Fix: wtb.register_project(project) first"
            ) from None

    def list_projects(self) -> list[str]:
        """Names of the registered projects."""
        return sorted(published_projects())

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
            choice.setdefault(WORKFLOW_KEY, workflow_variant)
        execution_id = f"{proj.name}-{uuid.uuid4().hex[:12]}"
        plan = prepare_batch(proj, [choice], [initial_state], execution_ids=[execution_id], settings=self.settings)
        parameters = {
            "project": proj.name,
            "initial_state": initial_state,
            "variant_config": choice,
            "execution_id": execution_id,
            "resume": False,
        }
        with self._services(plan):
            offer_plan(execution_id, plan, parameters)
            return self._flow(run_flow, plan)(**parameters)

    def run_batch_test(
        self,
        project: str,
        variant_matrix: list[dict[str, str]] | None = None,
        test_cases: list[dict[str, Any]] | None = None,
        parallelism: int | None = None,
        on_result: Callable[[ExecutionResult], None] | None = None,
        resume: str | None = None,
        regression_gate: dict[str, Any] | None = None,
        repetitions: int | None = None,
        race: RaceConfig | dict[str, Any] | None = None,
        budget_usd: float | None = None,
    ) -> BatchTestResult:
        """Run every variant combination on every test case; one Prefect flow run.

        Every batch and execution is recorded in the execution index
        (``$WTB_HOME/executions.sqlite``) with its result as soon as it ends.
        If the process running a batch dies (or is killed), finish the batch
        later, from any process, with ``run_batch_test(project, resume=batch_id)``:
        executions that completed or failed are not run again (their stored
        results come back in the batch result), interrupted and paused ones
        continue from their latest checkpoint, and the rest run. The batch id
        is ``BatchTestResult.batch_id`` or one of ``list_batches(project)``.

        Args:
            project: name of a registered project.
            variant_matrix: ``{node: variant, "_workflow": workflow_variant}``
                dicts; omitted nodes use their default implementation.
            test_cases: initial states (optionally with ``expected`` and ``case_id``).
            parallelism: executions computing at once; None = ``RayConfig.max_concurrent_workflows``.
                An execution waiting for an identical node call that another one computes
                (node-call sharing) does not count meanwhile: the next execution starts.
            on_result: called with each execution's result as it finishes
                (e.g. to drive a progress bar).
            resume: the id of an earlier batch to finish (give no matrix nor cases).
            regression_gate: ``{"baseline": label or {node: variant}, "tolerances":
                {metric: amount or "5%"}}``; the flow run fails with ``RegressionError``
                when a combination is worse than the baseline beyond a tolerance.
            repetitions: run each (variant, case) this many times as independent
                samples (``ExecutionResult.repetition``); identical node calls are
                shared only within one repetition. None = ``ExecutionConfig.repetitions``.
            race: race the variants instead of running the full matrix (a
                :class:`~wtb_prefect.config.RaceConfig` or a dict of its fields):
                cases run round by round in a seeded order, every surviving variant
                on the same cases, and a variant stops once anytime-valid tests
                decide it; the outcome (verdicts, how they were reached, node calls
                spent against the full matrix's) is ``result.tracking["race"]``.
                None = ``ExecutionConfig.race``. A resumed race goes on with its own.
            budget_usd: what this run may spend on model calls (US dollars; None =
                ``ExecutionConfig.budget_usd``). Once the spend reaches it, no new node
                call starts: calls in flight finish and are booked, the executions stop
                resumable, and ``result.tracking["cost"]["outcome"]`` is ``budget_exceeded``
                (with the batch id and what finished); ``resume=batch_id`` with a larger
                budget finishes the rest without redoing anything that finished.

        Raises:
            UnknownVariantError, UnknownNodeError, StateValidationError,
            ResourceUnsatisfiableError, ConfigError: before any work starts.
            ExecutionStateError: ``resume`` names a batch that is still running.
        """
        proj = self.get_project(project)
        if resume is not None:
            if race is not None:
                raise ConfigError(
                    "race",
                    "was given together with resume",
                    "give only resume=<batch id>; a resumed race goes on with the settings it started with",
                )
            if variant_matrix or test_cases:
                raise ConfigError(
                    "resume",
                    "was given together with variant_matrix/test_cases",
                    "give only resume=<batch id>; the batch's matrix and cases come from the execution index",
                )
            plan = prepare_batch_resume(
                proj,
                resume,
                parallelism=parallelism,
                regression_gate=regression_gate,
                settings=self.settings,
                budget_usd=budget_usd,
            )
        else:
            plan = prepare_batch(
                proj,
                variant_matrix or [],
                test_cases or [],
                parallelism=parallelism,
                regression_gate=regression_gate,
                settings=self.settings,
                repetitions=repetitions,
                race=race,
                budget_usd=budget_usd,
            )
        parameters = plan.flow_parameters()
        with self._services(plan), contextlib.ExitStack() as stack:
            if on_result is not None:
                stack.enter_context(watching(plan.batch_id, _ResultCallback(on_result)))
            offer_plan(plan.resume_of or plan.batch_id, plan, parameters)
            try:
                return self._flow(batch_test_flow, plan)(**parameters)
            except Exception as exc:
                outage = _api_outage(plan, exc)
                if outage is None:
                    raise
                raise outage from exc

    # ─── Control ───

    def pause(self, execution_id: str) -> None:
        """Pause an execution at its next node boundary (LangGraph superstep).

        The nodes that are running finish and their writes are checkpointed;
        no further node starts. The run that executes it then returns a result
        with status ``paused``. Works from any process: the request goes
        through the execution index. Pausing a pending execution of a batch
        pauses it right after it starts; pausing a paused one does nothing.

        Raises:
            UnknownExecutionError: no such execution.
            ExecutionStateError: the execution already completed or failed,
                or was interrupted (resume it instead).
        """
        record = self._record(execution_id)
        if record.status == "paused":
            return
        if record.status not in ("running", "pending"):
            raise ExecutionStateError(
                f"cannot pause execution {execution_id!r}: it is {record.status}. "
                + (
                    "Fix: resume it with wtb.resume(execution_id)"
                    if record.status == "interrupted"
                    else "Fix: only running executions can be paused"
                )
            )
        request(execution_id, PAUSE, self._index)

    def checkpoint(self, execution_id: str) -> None:
        """Take a checkpoint of a running execution at its next node boundary and go on.

        This is how ``checkpoint_strategy="manual"`` executions are
        checkpointed mid-run (with the other strategies every boundary is
        already checkpointed, so it only adds a copy).

        Raises:
            UnknownExecutionError: no such execution.
            ExecutionStateError: the execution is not running.
        """
        record = self._record(execution_id)
        if record.status != "running":
            raise ExecutionStateError(
                f"cannot checkpoint execution {execution_id!r}: it is {record.status}, not running. "
                "Fix: its latest checkpoint is already saved (see wtb.get_checkpoints)"
            )
        request(execution_id, CHECKPOINT, self._index)

    def resume(self, execution_id: str) -> ExecutionResult:
        """Continue a paused, failed or interrupted execution from its latest checkpoint.

        Runs as a new ``wtb-run`` flow run in this process (the process that
        started the execution may be gone; the project must be registered
        with this bench). A failed node runs again; after a rollback, every
        node after the rollback checkpoint runs again. Returns the result of
        this run (its ``nodes`` are the nodes run now).

        Raises:
            UnknownExecutionError: no such execution.
            ExecutionStateError: the execution completed already, or is running.
            UnknownProjectError: its project is not registered with this bench.
        """
        record = self._record(execution_id)
        if record.status == "completed":
            raise ExecutionStateError(
                f"cannot resume execution {execution_id!r}: it completed. "
                "Fix: wtb.rollback(execution_id, checkpoint_id) first to run again from a checkpoint"
            )
        if record.status == "running":
            raise ExecutionStateError(
                f"cannot resume execution {execution_id!r}: it is running (process {record.owner_pid}). "
                "Fix: wtb.pause(execution_id) first, or wait for it to end"
            )
        proj = self.get_project(record.project)
        plan = prepare_resume(proj, record, settings=self.settings)
        parameters = {
            "project": proj.name,
            "initial_state": dict(record.test_case),
            "variant_config": record.variant,
            "execution_id": execution_id,
            "resume": True,
        }
        with self._services(plan):
            offer_plan(execution_id, plan, parameters)
            return self._flow(run_flow, plan)(**parameters)

    def rollback(self, execution_id: str, checkpoint_id: str) -> None:
        """Move an execution back to one of its checkpoints (LangGraph time travel).

        A copy of that checkpoint becomes the execution's latest one, so
        ``get_state`` shows its state and ``resume`` runs again every node
        after it. The execution's status becomes ``paused``. Older
        checkpoints stay in the history. With file tracking on, the tracked
        files are restored to their snapshot of that checkpoint first.

        Raises:
            UnknownExecutionError: no such execution.
            UnknownCheckpointError: the execution has no checkpoint of that id.
            ExecutionStateError: the execution is running (pause it first).
        """
        record = self._record(execution_id)
        if record.status == "running":
            raise ExecutionStateError(
                f"cannot roll back execution {execution_id!r}: it is running (process {record.owner_pid}). "
                "Fix: wtb.pause(execution_id) first"
            )
        graph = self._graph(record)
        new_id = rollback_files(
            self.get_project(record.project),
            graph,
            execution_id,
            checkpoint_id,
            lambda: rewind(graph, execution_id, checkpoint_id),
            self.settings,
        )
        self._index.set_status(execution_id, "paused", checkpoint_id=new_id)

    # ─── Inspection ───

    def get_state(self, execution_id: str) -> dict[str, Any]:
        """The current state values of an execution (from its latest checkpoint).

        Works on running, paused, finished, failed and interrupted executions,
        from any process with access to the checkpoint storage (not
        ``memory``) and the project registered.

        Raises:
            UnknownExecutionError: no such execution.
        """
        record = self._record(execution_id)
        values = self._graph(record).get_state({"configurable": {"thread_id": execution_id}}).values
        return dict(values) if isinstance(values, dict) else values

    def get_checkpoints(self, execution_id: str) -> list[Checkpoint]:
        """Every checkpoint of an execution, newest first: id, parent, step, the
        node(s) that produced it, the nodes that run next, time and state.

        Raises:
            UnknownExecutionError: no such execution.
        """
        record = self._record(execution_id)
        return list_checkpoints(self._graph(record), execution_id)

    def get_checkpoint(self, execution_id: str, checkpoint_id: str) -> Any:
        """The LangGraph ``StateSnapshot`` of one checkpoint.

        Raises:
            UnknownExecutionError, UnknownCheckpointError.
        """
        record = self._record(execution_id)
        return find_checkpoint(self._graph(record), execution_id, checkpoint_id)

    def get_file_snapshots(self, execution_id: str) -> list[Any]:
        """The execution's file snapshots, oldest first, each linked to its checkpoint
        (empty when the project does not track files).

        Raises:
            UnknownExecutionError: no such execution.
        """
        record = self._record(execution_id)
        return list_file_snapshots(self.get_project(record.project), self._graph(record), execution_id, self.settings)

    def get_execution(self, execution_id: str) -> ExecutionRecord:
        """What the execution index knows of an execution (status, batch, variant, case).

        Raises:
            UnknownExecutionError: no such execution.
        """
        return self._record(execution_id)

    def get_result(self, execution_id: str) -> ExecutionResult | None:
        """The stored result of an execution's last run (None while it runs for the first time)."""
        self._record(execution_id)
        return self._index.result(execution_id)

    def list_executions(
        self, project: str | None = None, batch_id: str | None = None, status: str | None = None
    ) -> list[ExecutionRecord]:
        """Executions in the index, oldest first; ``status`` is one of pending, running,
        paused, completed, failed, interrupted (its process died)."""
        return self._index.list(project=project, batch_id=batch_id, status=status)

    def estimate_batch(
        self,
        project: str,
        variant_matrix: list[dict[str, str]] | None = None,
        test_cases: list[dict[str, Any]] | None = None,
        repetitions: int | None = None,
    ) -> BatchEstimate:
        """What a batch would cost, from the project's recorded history, without running a node.

        The batch is prepared (validated and compiled) as :meth:`run_batch_test`
        would, and priced from the mean cost per computed call of each node
        implementation in the execution index; with node-call sharing on, calls
        the plan repeats are counted once. ``no_history`` names the nodes whose
        implementation has no recorded call (priced at nothing).

        Raises:
            UnknownVariantError, UnknownNodeError, StateValidationError, ConfigError: bad input.
        """
        proj = self.get_project(project)
        plan = prepare_batch(
            proj, variant_matrix or [], test_cases or [], settings=self.settings, repetitions=repetitions
        )
        return estimate_plan(plan, recorded_results(self._index, proj.name))

    def list_batches(self, project: str | None = None) -> list[BatchRecord]:
        """Batches in the index, oldest first."""
        return self._index.batches(project)

    # ─── Internals ───

    @contextlib.contextmanager
    def _services(self, plan: BatchPlan) -> Iterator[None]:
        """Ray with resource checks, and the Prefect API (embedded server if needed).

        A request the cluster can never meet is rejected before the Prefect
        server is started or waited for (node bodies on Ray workers do not
        talk to Prefect, so they need no API address); from cold, the server
        starts beside Ray.
        """
        api_url = check_plan_resources(plan, beside=lambda: ensure_prefect_api(self.settings))
        with use_prefect_api(api_url), bounded_api_waits():
            yield

    @staticmethod
    def _flow(flow: Any, plan: BatchPlan) -> Any:
        """The flow to run ``plan`` with: node bodies in this process unless the plan runs on Ray."""
        return flow if plan.mode == "ray" else flow.with_options(task_runner=ThreadPoolTaskRunner())

    @property
    def _index(self) -> ExecutionIndex:
        return open_index(self.settings.state_dir)

    def _record(self, execution_id: str) -> ExecutionRecord:
        record = self._index.get(execution_id)
        if record is None:
            raise UnknownExecutionError(
                f"no execution {execution_id!r} in the execution index {self._index.path}. "
                "Fix: pick one of wtb.list_executions() (WTB_HOME must be the folder it ran with)"
            )
        return record

    def _graph(self, record: ExecutionRecord) -> Any:
        """The compiled graph of the execution's variant, on its checkpoint storage."""
        proj = self.get_project(record.project)
        key = (proj.name, proj.version, record.variant_label)
        graph = self._graphs.get(key)
        if graph is None:
            plan = prepare_batch(proj, [record.variant], [record.test_case], settings=self.settings)
            graph = self._graphs[key] = plan.items[0].compiled.graph
        return graph


def _api_outage(plan: BatchPlan, exc: Exception) -> PrefectAPIUnavailableError | None:
    """The typed error of a batch whose end the Prefect API could not record, or None.

    Keeps in the execution index what the API missed (the flow run's final
    state, the unsent task-run events) for ``run_batch_test(resume=...)``, and
    stops Prefect's buffering workers so that the process can exit now.
    """
    from prefect.settings import PREFECT_API_URL

    api_url = PREFECT_API_URL.value()
    if not is_api_error(exc) and api_answers(api_url):
        return None
    held = hold_back_buffered_work()
    index = plan.index
    records = index.list(batch_id=plan.batch_id)
    results = [r for r in (index.result(rec.execution_id) for rec in records if rec.finished) if r is not None]
    ran_here = {item.execution_id for item in plan.items if item.done is None}
    flow_runs = sorted({rec.flow_run_id for rec in records if rec.flow_run_id and rec.execution_id in ran_here})
    every_one_finished = len(results) == len(plan.items)
    for number, flow_run_id in enumerate(flow_runs):
        index.add_unrecorded(
            UnrecordedFlowRun(
                batch_id=plan.batch_id,
                flow_run_id=flow_run_id,
                state="COMPLETED" if every_one_finished else "CRASHED",
                message=(
                    f"recorded after the Prefect API came back: {len(results)} of {len(plan.items)} executions "
                    "finished while it was unreachable"
                ),
                events=held.events if number == 0 else [],
            )
        )
    batch = BatchTestResult(
        batch_id=plan.batch_id,
        project=plan.project.name,
        results=results,
        flow_run_id=flow_runs[0] if flow_runs else None,
    )
    return PrefectAPIUnavailableError(
        batch_id=plan.batch_id,
        project=plan.project.name,
        api_url=api_url,
        finished=len(results),
        total=len(plan.items),
        index_path=str(index.path),
        batch=batch,
        held_events=len(held.events),
        logs_dropped=held.logs_dropped,
    )
