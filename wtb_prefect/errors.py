"""The exception hierarchy of wtb_prefect.

Every error the package raises on purpose derives from :class:`WTBError` and
says what was wrong and how to fix it, in the style of pydantic and httpx.
"""

from __future__ import annotations


class WTBError(Exception):
    """Root of every error raised by wtb_prefect."""


class ConfigError(WTBError, ValueError):
    """A configuration value is invalid; the message names the field and the fix."""

    def __init__(self, field: str, problem: str, fix: str) -> None:
        self.field = field
        self.problem = problem
        self.fix = fix
        super().__init__(f"{field}: {problem}. Fix: {fix}")


class BatchIdConflictError(ConfigError):
    """A batch id names an existing batch whose project, matrix, cases or repetitions differ.

    Batches are never merged: the same id with the same inputs resumes the batch.
    """


class ProjectError(WTBError):
    """A project definition is unusable (bad graph factory, unknown node, ...)."""


class GraphFactoryError(ProjectError, TypeError):
    """A graph factory did not return a compiled LangGraph graph."""


class UnknownProjectError(WTBError, KeyError):
    """A project name is not registered with the test bench."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class UnknownNodeError(ProjectError, KeyError):
    """A node name does not exist in the graph it was used with."""

    def __str__(self) -> str:
        return str(self.args[0])


class UnknownVariantError(ProjectError, KeyError):
    """A node or workflow variant name is not registered."""

    def __str__(self) -> str:
        return str(self.args[0])


class UnknownVersionError(ProjectError, KeyError):
    """A project version does not exist in the version history."""

    def __str__(self) -> str:
        return str(self.args[0])


class StateValidationError(WTBError, ValueError):
    """An initial state or test case does not validate against the state schema."""


class ResourceUnsatisfiableError(WTBError):
    """A node asks for resources that no node of the Ray cluster can ever provide."""


class ServiceError(WTBError, RuntimeError):
    """An embedded service (Prefect server, Ray cluster, ...) failed to start or answer."""


class ExecutionError(WTBError, RuntimeError):
    """An execution could not be started, controlled or inspected."""


class UnknownExecutionError(ExecutionError, KeyError):
    """An execution id is not known to the test bench."""

    def __str__(self) -> str:
        return str(self.args[0])


class UnknownCheckpointError(ExecutionError, KeyError):
    """A checkpoint id is not one of the execution's checkpoints."""

    def __str__(self) -> str:
        return str(self.args[0])


class ExecutionStateError(ExecutionError):
    """A control operation does not fit the execution's status (e.g. resume a completed one)."""


class NodeQueueTimeoutError(ExecutionError, TimeoutError):
    """A node call waited longer than ``ExecutionConfig.queue_timeout`` to start.

    The message names what was short: workers starting, CPUs, GPUs, memory,
    a custom resource, or a rate limit.
    """


class PrefectAPIUnavailableError(ServiceError):
    """The Prefect API went away during a batch and was still unreachable at its end.

    The batch itself went on (Ray, LangGraph and the checkpoints do not need
    the API); every execution that finished has its result in the execution
    index. ``batch`` holds those results (a ``BatchTestResult``), ``batch_id``
    names the batch to resume, ``held_events`` counts the task-run events kept
    for the API and ``logs_dropped`` the log lines dropped.
    """

    def __init__(
        self,
        *,
        batch_id: str,
        project: str,
        api_url: str | None,
        finished: int,
        total: int,
        index_path: str,
        batch: object = None,
        held_events: int = 0,
        logs_dropped: int = 0,
    ) -> None:
        self.batch_id = batch_id
        self.project = project
        self.api_url = api_url
        self.finished = finished
        self.total = total
        self.batch = batch
        self.held_events = held_events
        self.logs_dropped = logs_dropped
        super().__init__(
            f"the Prefect API{f' at {api_url}' if api_url else ''} became unreachable during batch {batch_id!r} "
            f"and did not come back before it ended. The batch went on without it: {finished} of {total} "
            f"executions finished and their results are kept in the execution index ({index_path}); the "
            f"Prefect UI misses the end of the batch's flow run and {held_events} task-run events (kept for it). "
            f"Fix: once the API answers again, run run_batch_test({project!r}, resume={batch_id!r}) "
            f"(or `wtb batch {project} --resume {batch_id}`): it records the missing flow-run and task-run "
            "states and runs only what did not finish"
        )


class StateStorageError(ExecutionError):
    """The state folder (checkpoints, execution index) could not be written: disk full or failing.

    The execution that hit it is left resumable (``interrupted``) at its last
    checkpoint; nothing it had stored before is lost. ``batch_id`` names the
    batch to resume once there is space again.
    """

    def __init__(self, message: str, *, batch_id: str | None = None, execution_id: str | None = None) -> None:
        self.batch_id = batch_id
        self.execution_id = execution_id
        super().__init__(message)


class BudgetExceeded(ExecutionError):
    """The batch's spend reached its ``budget_usd``: this node call did not start.

    The execution stops at its last checkpoint (``paused``, resumable); calls
    in flight when the budget was reached finish and are booked. Resume the
    batch with a larger budget to finish the rest.
    """

    def __init__(self, *, budget_usd: float, spent_usd: float, node: str | None = None) -> None:
        self.budget_usd = budget_usd
        self.spent_usd = spent_usd
        self.node = node
        where = f"node {node!r} did not start: " if node else ""
        super().__init__(
            f"{where}the batch has spent ${spent_usd:.4f} of its budget_usd ${budget_usd:.4f}. "
            "Fix: resume the batch with a larger budget (run_batch_test(project, resume=batch_id, budget_usd=...) "
            "or `wtb batch <project> --resume <batch id> --budget <dollars>`)"
        )


class CostLimitExceeded(ExecutionError):
    """One execution's spend reached ``max_cost_per_execution``: it stops with this error, the others go on."""

    def __init__(self, *, execution_id: str, limit_usd: float, spent_usd: float, node: str | None = None) -> None:
        self.execution_id = execution_id
        self.limit_usd = limit_usd
        self.spent_usd = spent_usd
        self.node = node
        where = f" before node {node!r}" if node else ""
        super().__init__(
            f"execution {execution_id!r} stopped{where}: it spent ${spent_usd:.4f}, reaching its "
            f"max_cost_per_execution of ${limit_usd:.4f} (an agent in a loop?). Fix: look at its node records' "
            "cost_usd, or raise ExecutionConfig.max_cost_per_execution"
        )
