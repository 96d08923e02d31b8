"""One execution: compiling a variant, dispatching its nodes as Prefect tasks on Ray,
environments, checkpoints, pause/resume control and the execution index.

Never imports :mod:`wtb_prefect.batch` (enforced by import-linter): an execution
does not know the batch around it; the batch attaches through
:class:`~wtb_prefect.run.execution.ExecutionHooks`.
"""
