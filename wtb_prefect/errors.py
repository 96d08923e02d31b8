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
