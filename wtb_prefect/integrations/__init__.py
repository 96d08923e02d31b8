"""Integrations attached as plugins (see :mod:`wtb_prefect.plugins`): MLflow, tracing,
Prefect artifacts and blocks, DVC file tracking.

Nothing below this package imports it (enforced by import-linter); each module
registers its batch observer (or reference resolver) when the plugin loader imports it.
"""
